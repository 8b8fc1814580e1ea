# kiln's AWSTOE step runtime (bash ≥ 4.4; bash-static 5.2 on the base image).
# Sourced by generated phase scripts, in the image build (build + validate
# phases) and in the test container (test phase). Each step prints one
# machine-readable line kiln parses:
#   ::kiln-step phase=P step=S status=passed|failed|ignored|skipped exit=N attempts=A ms=T
set -u
set -o pipefail
# Replacement text is literal (bash 5.2 would otherwise expand `&`).
shopt -u patsub_replacement 2>/dev/null || true
declare -A TOE_OUT=() TOE_STEP_OUT=()
TOE_FAILED=0 TOE_SEQ=0 TOE_UPLOADS=0 TOE_PREFIX="" TOE_T=0
TOE_LNAME="" TOE_LVALUE="" TOE_LINDEX=""
TOE_NEXT_LMODE="" TOE_NEXT_LNAME="" TOE_NEXT_LDELIM=""
TOE_NEXT_LVALUES=() TOE_NEXT_IF=()
TOE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOE_TMP="$(mktemp -d 2>/dev/null || echo /tmp/kiln-toe.$$)"
mkdir -p "$TOE_TMP"
TOE_MAX_ITERATIONS=1000

toe_now_ms() { # bash 5 has EPOCHREALTIME (seconds.micros); fall back to whole seconds
  if [ -n "${EPOCHREALTIME:-}" ]; then local t=${EPOCHREALTIME/[.,]/}; echo $(( t / 1000 )); else echo $(( $(date +%s) * 1000 )); fi
}
toe_log() { printf 'kiln-toe: %s\n' "$*" >&2; }

# toe_subst TEXT LOOPNAME LOOPVALUE LOOPINDEX: sets TOE_R to TEXT with the
# runtime placeholders (loop variables, chained outputs and inputs) replaced.
# No subshell, so trailing newlines survive.
toe_subst() {
  local lname=$2 lvalue=$3 lindex=$4 key
  TOE_R=$1
  case $TOE_R in *'{{'*) ;; *) return 0 ;; esac
  if [ -n "$lindex" ]; then
    TOE_R=${TOE_R//"{{ loop.value }}"/"$lvalue"}
    TOE_R=${TOE_R//"{{ loop.index }}"/"$lindex"}
    if [ -n "$lname" ]; then
      TOE_R=${TOE_R//"{{ $lname.value }}"/"$lvalue"}
      TOE_R=${TOE_R//"{{ $lname.index }}"/"$lindex"}
    fi
  fi
  for key in "${!TOE_OUT[@]}"; do
    TOE_R=${TOE_R//"{{ $key }}"/"${TOE_OUT[$key]}"}
  done
}
# Runtime substitution of one argument into TOE_R.
toe_s() { toe_subst "$1" "$TOE_LNAME" "$TOE_LVALUE" "$TOE_LINDEX"; }

# toe_out NAME VALUE [SEP]: adds VALUE to the step output NAME (chained as
# {{ phase.step.outputs.NAME }}); iterations and inputs join with SEP.
toe_out() {
  local sep=${3-$'\n'}
  if [ -n "${TOE_STEP_OUT[$1]+x}" ]; then TOE_STEP_OUT[$1]+="$sep$2"; else TOE_STEP_OUT[$1]=$2; fi
}

toe_timeout() { # toe_timeout SECS CMD... (SECS 0 = none)
  local secs=$1; shift
  if [ "$secs" != 0 ] && command -v timeout >/dev/null 2>&1; then
    timeout "$secs" "$@"
  else
    "$@"
  fi
}

# AWSTOE's reboot convention: exit 194 (or 3010) asks the caller to reboot and
# run the step again. Nothing can reboot inside a container build.
toe_reboot_code() {
  case $1 in
    194|3010) toe_log "the step exited $1, AWSTOE's reboot convention (194 on Linux, 3010 on Windows: reboot the instance and run this step again); a container image build cannot reboot, so the step fails. Make the commands finish without a reboot and exit 0." ;;
  esac
}

# --- general execution --------------------------------------------------------
# AWSTOE writes the commands into one file and runs it with bash; the file's
# exit code is the step's (no -e: `false; echo reached` succeeds).
toe_a_ExecuteBash() {
  local f="$TOE_TMP/input.$BASHPID.$RANDOM.sh" rc
  printf '%s\n' "$1" >"$f"
  toe_timeout "$TOE_T" bash "$f"; rc=$?
  rm -f "$f"
  toe_reboot_code "$rc"
  return "$rc"
}
toe_a_ExecuteBinary() {
  local p=$1 rc; shift
  toe_timeout "$TOE_T" "$p" "$@"; rc=$?
  toe_reboot_code "$rc"
  return "$rc"
}

# --- text encodings (utf8, utf16le/be, utf32le/be) ------------------------------
# toe_encode ENC: UTF-8 on stdin → ENC on stdout (no byte order mark).
toe_encode() {
  local enc=$1
  if [ "$enc" = utf8 ]; then cat; return; fi
  local -a b; read -r -d '' -a b < <(od -An -v -tu1; printf '\0')
  local i=0 n=${#b[@]} c cp out="" x
  while (( i < n )); do
    c=${b[i]}
    if (( c < 128 )); then cp=$c; i=$((i + 1))
    elif (( c >> 5 == 6 && i + 1 < n )); then cp=$(( (c & 31) << 6 | (b[i+1] & 63) )); i=$((i + 2))
    elif (( c >> 4 == 14 && i + 2 < n )); then cp=$(( (c & 15) << 12 | (b[i+1] & 63) << 6 | (b[i+2] & 63) )); i=$((i + 3))
    elif (( c >> 3 == 30 && i + 3 < n )); then cp=$(( (c & 7) << 18 | (b[i+1] & 63) << 12 | (b[i+2] & 63) << 6 | (b[i+3] & 63) )); i=$((i + 4))
    else toe_log "the text is not valid UTF-8 (byte $i)"; return 1
    fi
    case $enc in
      utf16le|utf16be)
        local -a units=("$cp")
        if (( cp >= 0x10000 )); then units=( $(( 0xD800 | (cp - 0x10000) >> 10 )) $(( 0xDC00 | ((cp - 0x10000) & 0x3FF) )) ); fi
        local u
        for u in "${units[@]}"; do
          if [ "$enc" = utf16le ]; then printf -v x '\\x%02x\\x%02x' $(( u & 255 )) $(( u >> 8 ))
          else printf -v x '\\x%02x\\x%02x' $(( u >> 8 )) $(( u & 255 )); fi
          out+=$x
        done ;;
      utf32le) printf -v x '\\x%02x\\x%02x\\x%02x\\x%02x' $(( cp & 255 )) $(( cp >> 8 & 255 )) $(( cp >> 16 & 255 )) 0; out+=$x ;;
      utf32be) printf -v x '\\x%02x\\x%02x\\x%02x\\x%02x' 0 $(( cp >> 16 & 255 )) $(( cp >> 8 & 255 )) $(( cp & 255 )); out+=$x ;;
      *) toe_log "unknown encoding $enc"; return 1 ;;
    esac
  done
  printf '%b' "$out"
}

# toe_decode ENC: ENC on stdin → UTF-8 on stdout (a leading byte order mark is dropped).
toe_decode() {
  local enc=$1
  if [ "$enc" = utf8 ]; then cat; return; fi
  local -a b; read -r -d '' -a b < <(od -An -v -tu1; printf '\0')
  local i=0 n=${#b[@]} w=2 cp lo out="" x
  case $enc in utf32*) w=4 ;; esac
  (( n % w == 0 )) || { toe_log "the file is not $enc (odd length)"; return 1; }
  while (( i < n )); do
    case $enc in
      utf16le) cp=$(( b[i] | b[i+1] << 8 )) ;;
      utf16be) cp=$(( b[i] << 8 | b[i+1] )) ;;
      utf32le) cp=$(( b[i] | b[i+1] << 8 | b[i+2] << 16 | b[i+3] << 24 )) ;;
      utf32be) cp=$(( b[i] << 24 | b[i+1] << 16 | b[i+2] << 8 | b[i+3] )) ;;
    esac
    i=$((i + w))
    if (( w == 2 && cp >= 0xD800 && cp < 0xDC00 && i + 1 < n )); then
      if [ "$enc" = utf16le ]; then lo=$(( b[i] | b[i+1] << 8 )); else lo=$(( b[i] << 8 | b[i+1] )); fi
      cp=$(( 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00) )); i=$((i + 2))
    fi
    (( i == w && cp == 0xFEFF )) && continue
    if (( cp < 0x80 )); then printf -v x '\\x%02x' "$cp"
    elif (( cp < 0x800 )); then printf -v x '\\x%02x\\x%02x' $(( 0xC0 | cp >> 6 )) $(( 0x80 | (cp & 63) ))
    elif (( cp < 0x10000 )); then printf -v x '\\x%02x\\x%02x\\x%02x' $(( 0xE0 | cp >> 12 )) $(( 0x80 | (cp >> 6 & 63) )) $(( 0x80 | (cp & 63) ))
    else printf -v x '\\x%02x\\x%02x\\x%02x\\x%02x' $(( 0xF0 | cp >> 18 )) $(( 0x80 | (cp >> 12 & 63) )) $(( 0x80 | (cp >> 6 & 63) )) $(( 0x80 | (cp & 63) ))
    fi
    out+=$x
  done
  printf '%b' "$out"
}

# --- file system ------------------------------------------------------------------
toe_own() { # path owner group recursive
  local r=""; [ "${4:-false}" = true ] && r=-R
  if [ -n "$2" ]; then chown $r "$2${3:+:$3}" "$1"
  elif [ -n "$3" ]; then chgrp $r "$3" "$1"
  fi
}
toe_a_CreateFile() { # path content encoding perms owner group overwrite
  if [ -e "$1" ] && [ "$7" = false ]; then toe_log "CreateFile: $1 exists and overwrite is false"; return 1; fi
  [ -d "$1" ] && { toe_log "CreateFile: $1 is a folder"; return 1; }
  mkdir -p "$(dirname "$1")" || return 1
  printf '%s' "$2" | toe_encode "$3" >"$1" || return 1
  [ -z "$4" ] || chmod "$4" "$1" || return 1
  toe_own "$1" "$5" "$6"
}
toe_a_AppendFile() { # path content encoding
  [ -f "$1" ] || { toe_log "AppendFile: $1 does not exist"; return 1; }
  printf '%s' "$2" | toe_encode "$3" >>"$1"
}
toe_a_CreateFolder() { # path perms owner group overwrite
  if [ -e "$1" ] && [ "$5" = false ]; then toe_log "CreateFolder: $1 exists and overwrite is false"; return 1; fi
  mkdir -p "$1" || return 1
  [ -z "$2" ] || chmod "$2" "$1" || return 1
  toe_own "$1" "$3" "$4"
}

# toe_matches KIND PATH: sets TOE_M to the paths PATH names; a `*` is allowed
# in the last segment only. KIND is file or folder.
toe_matches() {
  local kind=$1 p=$2 dir base f
  TOE_M=()
  base=${p##*/}; dir=${p%/*}; [ "$dir" = "$p" ] && dir=.
  if [[ $dir == *'*'* ]]; then toe_log "a wildcard is allowed only after the last /: $p"; return 1; fi
  if [[ $base != *'*'* ]]; then TOE_M=("$p"); return 0; fi
  for f in "$dir"/$base; do
    if [ "$kind" = file ] && [ -f "$f" ]; then TOE_M+=("$f"); fi
    if [ "$kind" = folder ] && [ -d "$f" ]; then TOE_M+=("$f"); fi
  done
  return 0
}

# toe_a_Transfer "copy file|copy folder|move file|move folder" SOURCE DESTINATION OVERWRITE
# A destination ending in / is a folder: the source keeps its name there.
toe_a_Transfer() {
  local op=${1%% *} kind=${1##* } src=$2 dst=$3 overwrite=$4 s t
  toe_matches "$kind" "$src" || return 1
  if [[ ${src##*/} == *'*'* ]]; then
    [[ $dst == */ ]] || { toe_log "$1: $src has a wildcard, so the destination must be a folder ending in /"; return 1; }
    [ ${#TOE_M[@]} -gt 0 ] || { toe_log "$1: nothing matches $src"; return 1; }
  fi
  for s in "${TOE_M[@]}"; do
    if [ "$kind" = file ] && [ ! -f "$s" ]; then toe_log "$1: $s is not a file"; return 1; fi
    if [ "$kind" = folder ] && [ ! -d "$s" ]; then toe_log "$1: $s is not a folder"; return 1; fi
    if [[ $dst == */ ]]; then t=$dst${s##*/}; else t=$dst; fi
    if [ -e "$t" ] || [ -L "$t" ]; then
      [ "$overwrite" = true ] || { toe_log "$1: $t exists and overwrite is false"; return 1; }
      if [ "$kind" = file ] && [ -d "$t" ]; then toe_log "$1: $t is a folder (end the destination with / to put the file in it)"; return 1; fi
      if [ "$kind" = folder ]; then rm -rf "$t" || return 1; fi
    fi
    mkdir -p "$(dirname "$t")" || return 1
    case $op in
      copy) if [ "$kind" = file ]; then cp -pf "$s" "$t"; else cp -a "$s" "$t"; fi ;;
      move) mv -f "$s" "$t" ;;
    esac || return 1
  done
}
toe_a_DeleteFile() { # path
  local f
  toe_matches file "$1" || return 1
  if [[ ${1##*/} != *'*'* ]] && [ ! -e "$1" ] && [ ! -L "$1" ]; then toe_log "DeleteFile: $1 does not exist"; return 1; fi
  for f in "${TOE_M[@]}"; do
    [ -d "$f" ] && [ ! -L "$f" ] && { toe_log "DeleteFile: $f is a folder"; return 1; }
    rm -f "$f" || return 1
  done
}
toe_a_DeleteFolder() { # path force
  [ -d "$1" ] || { toe_log "DeleteFolder: $1 is not a folder"; return 1; }
  if [ "$2" = true ]; then rm -rf "$1"
  else rmdir "$1" 2>/dev/null || { toe_log "DeleteFolder: $1 is not empty (set force: true to delete it with its contents)"; return 1; }
  fi
}
toe_a_ListFiles() { # path pattern recursive → output files (comma-separated)
  [ -d "$1" ] || { toe_log "ListFiles: $1 is not a folder"; return 1; }
  local -a args=("$1"); [ "$3" = true ] || args+=(-maxdepth 1)
  args+=(-type f); [ -z "$2" ] || args+=(-name "$2")
  local list
  list=$(find "${args[@]}" | sort | tr '\n' ',') || return 1
  toe_out files "${list%,}" ,
}
toe_a_ReadFile() { # path encoding print → output content
  [ -f "$1" ] || { toe_log "ReadFile: $1 does not exist"; return 1; }
  local content
  content=$(toe_decode "$2" <"$1") || return 1
  [ "$3" = true ] && printf '%s\n' "$content"
  toe_out content "$content"
}
toe_a_SetFileEncoding() { # path encoding (the file is UTF-8)
  [ -f "$1" ] || { toe_log "SetFileEncoding: $1 does not exist"; return 1; }
  toe_encode "$2" <"$1" >"$1.kiln-enc" && cat "$1.kiln-enc" >"$1"; local rc=$?
  rm -f "$1.kiln-enc"; return $rc
}
toe_a_SetPermissions() { # path perms recursive
  [ -e "$1" ] || { toe_log "$1 does not exist"; return 1; }
  if [ "$3" = true ]; then chmod -R "$2" "$1"; else chmod "$2" "$1"; fi
}
toe_a_SetOwner() { # path owner group recursive (no group: the owner's login group)
  [ -e "$1" ] || { toe_log "$1 does not exist"; return 1; }
  local r=""; [ "$4" = true ] && r=-R
  chown $r "$2:$3" "$1"
}
toe_a_CreateSymlink() { # path target force
  [ -e "$2" ] || { toe_log "CreateSymlink: the target $2 does not exist"; return 1; }
  if [ -L "$1" ]; then
    [ "$3" = true ] || { toe_log "CreateSymlink: the link $1 exists (set force: true to replace it)"; return 1; }
    rm -f "$1" || return 1
  elif [ -e "$1" ]; then toe_log "CreateSymlink: $1 exists and is not a link"; return 1
  fi
  mkdir -p "$(dirname "$1")" && ln -s "$2" "$1"
}

# --- downloads ---------------------------------------------------------------------
toe_hash() { # algorithm file → lowercase hex
  local tool
  case ${1^^} in MD5) tool=md5sum ;; SHA1) tool=sha1sum ;; SHA256) tool=sha256sum ;; SHA512) tool=sha512sum ;;
    *) toe_log "unknown checksum algorithm $1"; return 1 ;; esac
  "$tool" "$2" | cut -d' ' -f1
}
# toe_a_WebDownload SOURCE DESTINATION OVERWRITE CHECKSUM ALGORITHM IGNORECERTS → output destination
toe_a_WebDownload() {
  local src=$1 dst=$2 name attempt rc=1
  if [[ $dst == */ ]]; then name=${src%%[?#]*}; name=${name##*/}; dst=$dst$name; fi
  if [ -e "$dst" ]; then
    [ "$3" = true ] || { toe_log "WebDownload: $dst exists and overwrite is false"; return 1; }
    if [ -n "$4" ] && [ "$(toe_hash "$5" "$dst")" = "${4,,}" ]; then toe_out destination "$dst"; return 0; fi
  fi
  mkdir -p "$(dirname "$dst")" || return 1
  for attempt in 1 2 3 4 5; do
    if command -v curl >/dev/null 2>&1; then
      local -a k=(); [ "$6" = true ] && k=(--insecure)
      toe_timeout "$TOE_T" curl -fsSL "${k[@]}" -o "$dst" "$src"; rc=$?
    else
      local -a k=(); [ "$6" = true ] && k=(--no-check-certificate)
      toe_timeout "$TOE_T" wget -q "${k[@]}" -O "$dst" "$src"; rc=$?
    fi
    [ "$rc" -eq 0 ] && break
    toe_log "WebDownload: $src failed (attempt $attempt of 5)"
    [ "$attempt" -lt 5 ] && sleep $(( 1 << (attempt - 1) ))
  done
  [ "$rc" -eq 0 ] || { rm -f "$dst"; return "$rc"; }
  if [ -n "$4" ]; then
    local got; got=$(toe_hash "$5" "$dst") || return 1
    if [ "$got" != "${4,,}" ]; then
      toe_log "WebDownload: checksum mismatch for $src: expected $4 ($5), got $got"
      rm -f "$dst"; return 1
    fi
  fi
  toe_out destination "$dst"
}

# toe_a_S3Download FETCHED SOURCE DESTINATION OVERWRITE: places what kiln
# fetched from SOURCE (into the build context folder FETCHED) at DESTINATION.
# As in AWSTOE, the destination's folders must exist; a prefix source
# (`s3://bucket/prefix/*`) fills the destination folder.
toe_a_S3Download() {
  local from=$1 src=$2 dst=$3 f t rel
  if [[ $src == *'*' ]]; then
    [ -d "$dst" ] || { toe_log "S3Download: the destination folder $dst does not exist"; return 1; }
    while IFS= read -r -d '' f; do
      rel=${f#"$from"/}; t=${dst%/}/$rel
      if [ -e "$t" ] && [ "$4" = false ]; then toe_log "S3Download: File already exists and \"overwrite\" property for \"destination\" file is set to false. Cannot download. ($t)"; return 1; fi
      mkdir -p "$(dirname "$t")" && cp "$f" "$t" && chmod 644 "$t" || return 1
    done < <(find "$from" -type f -print0)
    return 0
  fi
  f=$(find "$from" -type f | head -n 1)
  [ -n "$f" ] || { toe_log "S3Download: kiln fetched nothing for $src"; return 1; }
  if [[ $dst == */ ]] || [ -d "$dst" ]; then t=${dst%/}/${f##*/}; else t=$dst; fi
  [ -d "$(dirname "$t")" ] || { toe_log "S3Download: the folder of $t does not exist (AWSTOE requires the destination folders to exist)"; return 1; }
  if [ -e "$t" ] && [ "$4" = false ]; then toe_log "S3Download: File already exists and \"overwrite\" property for \"destination\" file is set to false. Cannot download. ($t)"; return 1; fi
  cp "$f" "$t" && chmod 644 "$t"
}

# toe_a_S3Upload STAGE SOURCE DESTINATION RECURSE: stages the files SOURCE
# names (a `*` in the last segment; folders only with RECURSE) and the
# destination URL in STAGE/N; kiln uploads them after the test phase.
toe_a_S3Upload() {
  local stage=$2 d p
  stage="$1/$(( TOE_UPLOADS++ ))"
  toe_matches file "$2" || return 1
  local -a found=()
  if [[ ${2##*/} == *'*'* ]]; then
    local dir=${2%/*}
    for p in "$dir"/${2##*/}; do
      if [ -f "$p" ] || { [ -d "$p" ] && [ "$4" = true ]; }; then found+=("$p"); fi
    done
    [ ${#found[@]} -gt 0 ] || { toe_log "S3Upload: nothing matches $2"; return 1; }
  elif [ -f "$2" ]; then found=("$2")
  elif [ -d "$2" ]; then
    [ "$4" = true ] || { toe_log "S3Upload: $2 is a folder; set recurse: true to upload it"; return 1; }
    found=("$2")
  else toe_log "S3Upload: $2 does not exist"; return 1
  fi
  mkdir -p "$stage/files" || return 1
  printf '%s' "$3" >"$stage/destination"
  for p in "${found[@]}"; do cp -R "$p" "$stage/files/" || return 1; done
}

# --- system -----------------------------------------------------------------------
# toe_a_UpdateOS NINCLUDE INCLUDE... EXCLUDE...: upgrades with the image's
# package manager; the result is "include minus exclude" (all when no include).
toe_a_UpdateOS() {
  local ni=$1 p x; shift
  local -a inc=("${@:1:$ni}") exc=("${@:$((ni + 1))}") want=()
  for p in "${inc[@]}"; do
    for x in "${exc[@]}"; do [ "$p" = "$x" ] && continue 2; done
    want+=("$p")
  done
  if [ "$ni" -gt 0 ] && [ ${#want[@]} -eq 0 ]; then toe_log "UpdateOS: every included package is excluded; nothing to do"; return 0; fi
  if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q || return 1
    if [ "$ni" -gt 0 ]; then apt-get install -y -q --only-upgrade "${want[@]}"; return; fi
    [ ${#exc[@]} -eq 0 ] || apt-mark hold "${exc[@]}" || return 1
    apt-get upgrade -y -q; local rc=$?
    [ ${#exc[@]} -eq 0 ] || apt-mark unhold "${exc[@]}" >/dev/null
    return $rc
  elif command -v dnf >/dev/null 2>&1 || command -v yum >/dev/null 2>&1; then
    local pm=dnf; command -v dnf >/dev/null 2>&1 || pm=yum
    local -a ex=(); for x in "${exc[@]}"; do ex+=("--exclude=$x"); done
    "$pm" -y upgrade "${ex[@]}" "${want[@]}"
  elif command -v zypper >/dev/null 2>&1; then
    zypper --non-interactive refresh || return 1
    if [ "$ni" -gt 0 ]; then zypper --non-interactive update "${want[@]}"; return; fi
    [ ${#exc[@]} -eq 0 ] || zypper --non-interactive addlock "${exc[@]}" || return 1
    zypper --non-interactive update; local rc=$?
    [ ${#exc[@]} -eq 0 ] || zypper --non-interactive removelock "${exc[@]}" >/dev/null
    return $rc
  elif command -v apk >/dev/null 2>&1; then
    apk update || return 1
    if [ "$ni" -gt 0 ]; then apk add --upgrade "${want[@]}"; return; fi
    [ ${#exc[@]} -eq 0 ] || { toe_log "UpdateOS: apk cannot leave packages out of a full upgrade; list the packages to upgrade in include instead of using exclude"; return 1; }
    apk upgrade
  else
    toe_log "UpdateOS: this image has no supported package manager (looked for apt-get, dnf, yum, zypper and apk on PATH=$PATH); UpdateOS upgrades packages with the image's own package manager"
    return 1
  fi
}

# --- conditions (if, Assert) ----------------------------------------------------
# toe_num A: sets TOE_NS (sign), TOE_NI (integer digits), TOE_NF (fraction); fails if A is no number.
toe_num() {
  [[ $1 =~ ^[[:space:]]*([+-]?)([0-9]*)(\.([0-9]*))?[[:space:]]*$ ]] || return 1
  [ -n "${BASH_REMATCH[2]}${BASH_REMATCH[4]}" ] || return 1
  TOE_NS=${BASH_REMATCH[1]:-+}; TOE_NI=${BASH_REMATCH[2]}; TOE_NF=${BASH_REMATCH[4]}
  while [[ $TOE_NI == 0* ]]; do TOE_NI=${TOE_NI#0}; done
  while [[ $TOE_NF == *0 ]]; do TOE_NF=${TOE_NF%0}; done
  [ -z "$TOE_NI$TOE_NF" ] && TOE_NS=+
  return 0
}
# toe_numcmp A B: prints lt, eq or gt; fails when either is no number.
toe_numcmp() {
  toe_num "$1" || return 1; local s1=$TOE_NS i1=$TOE_NI f1=$TOE_NF
  toe_num "$2" || return 1; local s2=$TOE_NS i2=$TOE_NI f2=$TOE_NF r=eq
  if [ "$s1" != "$s2" ]; then [ "$s1" = - ] && echo lt || echo gt; return 0; fi
  if [ ${#i1} -ne ${#i2} ]; then (( ${#i1} < ${#i2} )) && r=lt || r=gt
  elif [[ $i1 < $i2 ]]; then r=lt; elif [[ $i1 > $i2 ]]; then r=gt
  else
    while [ ${#f1} -lt ${#f2} ]; do f1+=0; done
    while [ ${#f2} -lt ${#f1} ]; do f2+=0; done
    if [[ $f1 < $f2 ]]; then r=lt; elif [[ $f1 > $f2 ]]; then r=gt; fi
  fi
  if [ "$s1" = - ] && [ "$r" != eq ]; then [ "$r" = lt ] && r=gt || r=lt; fi
  echo "$r"
}
# toe_cmp OPERATOR OPERAND [VALUE]: AWSTOE's comparison operators. String
# comparisons ignore case; number comparisons are false for non-numbers.
toe_cmp() {
  local op=$1 a=$2 b=${3-} r
  case $op in
    stringIsEmpty) [ -z "$a" ] ;;
    stringIsWhitespace) [[ -n $a && $a =~ ^[[:space:]]+$ ]] ;;
    stringEquals) [ "${a,,}" = "${b,,}" ] ;;
    stringLessThan) [[ ${a,,} < ${b,,} ]] ;;
    stringLessThanEquals) [[ ! ${a,,} > ${b,,} ]] ;;
    stringGreaterThan) [[ ${a,,} > ${b,,} ]] ;;
    stringGreaterThanEquals) [[ ! ${a,,} < ${b,,} ]] ;;
    patternMatches) [[ $b =~ $a ]] ;;
    number*)
      r=$(toe_numcmp "$a" "$b") || return 1
      case $op in
        numberEquals) [ "$r" = eq ] ;;
        numberLessThan) [ "$r" = lt ] ;;
        numberLessThanEquals) [ "$r" != gt ] ;;
        numberGreaterThan) [ "$r" = gt ] ;;
        numberGreaterThanEquals) [ "$r" != lt ] ;;
        *) return 1 ;;
      esac ;;
    fileExists) [ -f "$a" ] ;;
    folderExists) [ -d "$a" ] ;;
    binaryExists) command -v "$a" >/dev/null 2>&1 ;;
    file*Equals)
      [ -f "$a" ] || return 1
      r=${op#file}; r=$(toe_hash "${r%Equals}" "$a") || return 1
      [ "$r" = "${b,,}" ] ;;
    *) toe_log "unknown operator $op"; return 1 ;;
  esac
}

# --- steps ----------------------------------------------------------------------
# toe_loop NAME VALUE...: the next step loops over these values.
toe_loop() { TOE_NEXT_LMODE=fixed; TOE_NEXT_LNAME=$1; shift; TOE_NEXT_LVALUES=("$@"); }
# toe_loop_split NAME DELIMITER TEXT: the next step loops over TEXT split on
# DELIMITER, after substitution (TEXT may be a chained output).
toe_loop_split() { TOE_NEXT_LMODE=split; TOE_NEXT_LNAME=$1; TOE_NEXT_LDELIM=$2; TOE_NEXT_LVALUES=("$3"); }
# toe_if FUNC THEN ELSE: the next step runs, skips or aborts on FUNC's result.
toe_if() { TOE_NEXT_IF=("$@"); }

# toe_values: sets TOE_V to the pending loop's values (substituted, split).
toe_values() {
  local v rest d=$TOE_NEXT_LDELIM
  TOE_V=()
  case $TOE_NEXT_LMODE in
    fixed) for v in "${TOE_NEXT_LVALUES[@]}"; do toe_subst "$v" "" "" ""; TOE_V+=("$TOE_R"); done ;;
    split)
      toe_subst "${TOE_NEXT_LVALUES[0]}" "" "" ""; rest=$TOE_R
      while [[ $rest == *"$d"* ]]; do TOE_V+=("${rest%%"$d"*}"); rest=${rest#*"$d"}; done
      TOE_V+=("$rest") ;;
  esac
}

# toe_step PHASE STEP ONFAILURE MAXATTEMPTS TIMEOUT FUNC
toe_step() {
  local phase=$1 step=$2 onfail=$3 max=$4 fn=$6
  TOE_T=$5
  local shown="$TOE_PREFIX$step" key="$phase.$2" lname=$TOE_NEXT_LNAME looped=$TOE_NEXT_LMODE
  local -a cond=("${TOE_NEXT_IF[@]}")
  TOE_LNAME="" TOE_LVALUE="" TOE_LINDEX=""
  toe_values
  local -a values=("${TOE_V[@]}")
  TOE_NEXT_LMODE="" TOE_NEXT_LNAME="" TOE_NEXT_LVALUES=() TOE_NEXT_IF=()
  local start attempt=0 rc=0 i decision=Execute out k
  start=$(toe_now_ms)
  out="$TOE_TMP/$BASHPID.$((++TOE_SEQ)).out"
  echo "kiln-toe: ==> $phase/$shown" >&2
  if [ ${#cond[@]} -gt 0 ]; then
    if "${cond[0]}"; then decision=${cond[1]}; else decision=${cond[2]}; fi
  fi
  if [ "$decision" = Skip ]; then
    toe_log "$phase/$shown skipped (its if chose Skip)"
    echo "::kiln-step phase=$phase step=$shown status=skipped exit=0 attempts=0 ms=$(( $(toe_now_ms) - start ))"
    return 0
  fi
  if [ "$decision" = Abort ]; then
    toe_log "$phase/$shown failed: its if chose Abort"; rc=1
  elif [ -n "$looped" ] && [ ${#values[@]} -gt "$TOE_MAX_ITERATIONS" ]; then
    toe_log "$phase/$shown: the loop has ${#values[@]} iterations; the limit is $TOE_MAX_ITERATIONS"; rc=1
  else
    while :; do
      attempt=$((attempt + 1))
      : >"$out"; TOE_STEP_OUT=()
      if [ -n "$looped" ]; then
        rc=0
        for ((i = 0; i < ${#values[@]}; i++)); do
          TOE_LNAME=$lname TOE_LVALUE=${values[$i]} TOE_LINDEX=$i
          "$fn" > >(tee -a "$out") || { rc=$?; toe_log "$phase/$shown: iteration $i failed"; break; }
        done
      else
        "$fn" > >(tee -a "$out")
        rc=$?
      fi
      wait 2>/dev/null
      [ "$rc" -eq 0 ] && break
      [ "$attempt" -ge "$max" ] && break
      toe_log "$phase/$shown failed (exit $rc), attempt $attempt of $max; retrying"
      sleep 1
    done
  fi
  TOE_OUT["$key.outputs.stdout"]=$(cat "$out" 2>/dev/null)
  for k in "${!TOE_STEP_OUT[@]}"; do TOE_OUT["$key.outputs.$k"]=${TOE_STEP_OUT[$k]}; done
  local status=passed
  if [ "$rc" -ne 0 ]; then
    case "$onfail" in
      Ignore) status=ignored ;;
      Continue) status=failed; TOE_FAILED=1 ;;
      *) status=failed ;;
    esac
  fi
  echo "::kiln-step phase=$phase step=$shown status=$status exit=$rc attempts=$attempt ms=$(( $(toe_now_ms) - start ))"
  if [ "$rc" -ne 0 ] && [ "$onfail" = Abort ]; then
    toe_log "$phase/$shown failed with exit code $rc; onFailure is Abort"
    exit "$rc"
  fi
  return 0
}

# A nested document (ExecuteDocument) runs in a subshell: its own chained
# outputs, its failures end it and fail the ExecuteDocument step.
toe_document_begin() { TOE_OUT=(); TOE_FAILED=0; TOE_PREFIX+=$1; }
toe_document_end() {
  if [ "$TOE_FAILED" -ne 0 ]; then toe_log "a step of the nested document failed with onFailure: Continue"; exit 1; fi
}

toe_finish() {
  rm -rf "$TOE_TMP"
  if [ "$TOE_FAILED" -ne 0 ]; then
    toe_log "one or more steps failed with onFailure: Continue"
    exit 1
  fi
}
