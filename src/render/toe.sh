# kiln's AWSTOE step runtime (bash). Sourced by generated phase scripts, in
# the image build (build + validate phases) and in the test container (test
# phase). Each step prints one machine-readable line kiln parses:
#   ::kiln-step phase=P step=S status=passed|failed|ignored exit=N attempts=A ms=T
set -u
set -o pipefail
# Replacement text is literal (bash 5.2 would otherwise expand `&`).
shopt -u patsub_replacement 2>/dev/null || true
declare -A TOE_OUT=()
TOE_FAILED=0
TOE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOE_TMP="$(mktemp -d 2>/dev/null || echo /tmp/kiln-toe.$$)"
mkdir -p "$TOE_TMP"

toe_now_ms() { # bash 5 has EPOCHREALTIME (seconds.micros); fall back to whole seconds
  if [ -n "${EPOCHREALTIME:-}" ]; then local t=${EPOCHREALTIME/[.,]/}; echo $(( t / 1000 )); else echo $(( $(date +%s) * 1000 )); fi
}
toe_log() { printf 'kiln-toe: %s\n' "$*" >&2; }

# toe_subst TEXT LOOPNAME LOOPVALUE LOOPINDEX: sets TOE_R to TEXT with the
# runtime placeholders (loop variables, step outputs) replaced. No subshell, so
# trailing newlines survive.
toe_subst() {
  local lname=$2 lvalue=$3 lindex=$4 key
  TOE_R=$1
  if [ -n "$lindex" ]; then
    TOE_R=${TOE_R//"{{ loop.value }}"/"$lvalue"}
    TOE_R=${TOE_R//"{{ loop.index }}"/"$lindex"}
    if [ -n "$lname" ]; then
      TOE_R=${TOE_R//"{{ $lname.value }}"/"$lvalue"}
      TOE_R=${TOE_R//"{{ $lname.index }}"/"$lindex"}
    fi
  fi
  local out
  for key in "${!TOE_OUT[@]}"; do
    out=${TOE_OUT[$key]}
    TOE_R=${TOE_R//"{{ $key.outputs.stdout }}"/"$out"}
  done
}

toe_timeout() { # toe_timeout SECS CMD... (SECS 0 = none)
  local secs=$1; shift
  if [ "$secs" != 0 ] && command -v timeout >/dev/null 2>&1; then
    timeout "$secs" "$@"
  else
    "$@"
  fi
}

# --- actions: each reads its (already substituted) arguments -----------------
toe_a_ExecuteBash() { toe_timeout "$TOE_T" bash -e -o pipefail -c "$1"; }
toe_a_ExecuteBinary() { local p=$1; shift; toe_timeout "$TOE_T" "$p" "$@"; }
toe_own() { # path owner group
  [ -z "$2" ] && [ -z "$3" ] && return 0
  chown "${2}${3:+:$3}" "$1"
}
toe_a_CreateFile() { # path content encoding perms owner group overwrite
  [ "$7" = false ] && [ -e "$1" ] && { toe_log "$1 exists and overwrite is false"; return 1; }
  mkdir -p "$(dirname "$1")"
  if [ "$3" = base64 ]; then printf '%s' "$2" | base64 -d >"$1"; else printf '%s' "$2" >"$1"; fi
  [ -z "$4" ] || chmod "$4" "$1"
  toe_own "$1" "$5" "$6"
}
toe_a_AppendFile() { # path content encoding
  mkdir -p "$(dirname "$1")"
  if [ "$3" = base64 ]; then printf '%s' "$2" | base64 -d >>"$1"; else printf '%s' "$2" >>"$1"; fi
}
toe_a_CreateFolder() { # path perms owner group overwrite
  [ "$5" = false ] && [ -e "$1" ] && { toe_log "$1 exists and overwrite is false"; return 1; }
  mkdir -p "$1"
  [ -z "$2" ] || chmod "$2" "$1"
  toe_own "$1" "$3" "$4"
}
toe_copy() { # flags source destination overwrite
  [ "$4" = false ] && [ -e "$3" ] && { toe_log "$3 exists and overwrite is false"; return 1; }
  mkdir -p "$(dirname "$3")"
  cp $1 "$2" "$3"
}
toe_a_CopyFile() { toe_copy "-p" "$1" "$2" "$3"; }
toe_a_CopyFolder() { toe_copy "-a" "$1" "$2" "$3"; }
toe_a_MoveFile() { [ "$3" = false ] && [ -e "$2" ] && { toe_log "$2 exists and overwrite is false"; return 1; }; mkdir -p "$(dirname "$2")"; mv -f "$1" "$2"; }
toe_a_MoveFolder() { toe_a_MoveFile "$@"; }
toe_a_DeleteFile() { [ -e "$1" ] || [ -L "$1" ] || { toe_log "$1 does not exist"; return 1; }; rm -f "$1"; }
toe_a_DeleteFolder() { # path force
  [ -d "$1" ] || { toe_log "$1 is not a folder"; return 1; }
  if [ "$2" = true ]; then rm -rf "$1"; else rmdir "$1"; fi
}
toe_a_SetFilePermissions() { chmod "$2" "$1"; }
toe_a_SetFolderPermissions() { if [ "$3" = true ]; then chmod -R "$2" "$1"; else chmod "$2" "$1"; fi; }
toe_a_SetFileOwner() { chown "${2}${3:+:$3}" "$1"; }
toe_a_SetFolderOwner() { if [ "$4" = true ]; then chown -R "${2}${3:+:$3}" "$1"; else chown "${2}${3:+:$3}" "$1"; fi; }
toe_a_CreateSymlink() { # source destination force
  if [ "$3" = true ]; then ln -sfn "$1" "$2"; else ln -s "$1" "$2"; fi
}
toe_a_WebDownload() { # source destination overwrite checksum algorithm
  [ "$3" = false ] && [ -e "$2" ] && { toe_log "$2 exists and overwrite is false"; return 1; }
  mkdir -p "$(dirname "$2")"
  if command -v curl >/dev/null 2>&1; then toe_timeout "$TOE_T" curl -fsSL -o "$2" "$1"
  else toe_timeout "$TOE_T" wget -q -O "$2" "$1"; fi || return 1
  if [ -n "$4" ]; then
    local tool got
    case "$5" in SHA1) tool=sha1sum ;; MD5) tool=md5sum ;; SHA512) tool=sha512sum ;; *) tool=sha256sum ;; esac
    got=$($tool "$2" | cut -d' ' -f1)
    if [ "$got" != "$(printf '%s' "$4" | tr 'A-F' 'a-f')" ]; then
      toe_log "checksum mismatch for $1: expected $4, got $got"
      rm -f "$2"
      return 1
    fi
  fi
}

# toe_step PHASE STEP ONFAILURE MAXATTEMPTS TIMEOUT LOOPNAME NVALUES VALUES... -- FUNC
# FUNC is called with (loopvalue, loopindex) and runs the action(s).
toe_step() {
  local phase=$1 step=$2 onfail=$3 max=$4
  TOE_T=$5
  local lname=$6 n=$7; shift 7
  local values=()
  local i
  for ((i = 0; i < n; i++)); do values+=("$1"); shift; done
  [ "$1" = -- ] && shift
  local fn=$1
  local start attempt=0 rc=0 out
  start=$(toe_now_ms)
  out="$TOE_TMP/$phase.$step.out"
  echo "kiln-toe: ==> $phase/$step" >&2
  while :; do
    attempt=$((attempt + 1))
    : >"$out"
    if [ "$n" -gt 0 ]; then
      rc=0
      for ((i = 0; i < n; i++)); do
        TOE_LNAME=$lname TOE_LVALUE=${values[$i]} TOE_LINDEX=$i
        "$fn" > >(tee -a "$out") || { rc=$?; break; }
      done
    else
      TOE_LNAME="" TOE_LVALUE="" TOE_LINDEX=""
      "$fn" > >(tee -a "$out")
      rc=$?
    fi
    wait 2>/dev/null
    [ "$rc" -eq 0 ] && break
    [ "$attempt" -ge "$max" ] && break
    toe_log "$phase/$step failed (exit $rc), attempt $attempt of $max; retrying"
    sleep 1
  done
  local stdout
  stdout=$(cat "$out" 2>/dev/null)
  TOE_OUT["$phase.$step"]=$stdout
  local status=passed
  if [ "$rc" -ne 0 ]; then
    case "$onfail" in
      Ignore) status=ignored ;;
      Continue) status=failed; TOE_FAILED=1 ;;
      *) status=failed ;;
    esac
  fi
  echo "::kiln-step phase=$phase step=$step status=$status exit=$rc attempts=$attempt ms=$(( $(toe_now_ms) - start ))"
  if [ "$rc" -ne 0 ] && [ "$onfail" = Abort ]; then
    toe_log "$phase/$step failed with exit code $rc; onFailure is Abort"
    exit "$rc"
  fi
  return 0
}

# Runtime placeholder substitution of one argument into TOE_R.
toe_s() { toe_subst "$1" "$TOE_LNAME" "$TOE_LVALUE" "$TOE_LINDEX"; }

toe_finish() {
  rm -rf "$TOE_TMP"
  if [ "$TOE_FAILED" -ne 0 ]; then
    toe_log "one or more steps failed with onFailure: Continue"
    exit 1
  fi
}
