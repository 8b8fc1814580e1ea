//! Dockerfile templates: a small instruction parser (continuations,
//! comments), Image Builder's `{{{ imagebuilder:… }}}` placeholders, and the
//! `FROM` lines that must be pinned.

/// The parent image placeholder.
pub const PARENT_IMAGE: &str = "{{{ imagebuilder:parentImage }}}";
/// The environments placeholder (kiln: `ARG` lines for the recipe's build args).
pub const ENVIRONMENTS: &str = "{{{ imagebuilder:environments }}}";
/// The components placeholder (kiln: the components' build + validate phases).
pub const COMPONENTS: &str = "{{{ imagebuilder:components }}}";

/// The template used when a recipe names no `dockerfile`.
pub const DEFAULT_TEMPLATE: &str = "FROM {{{ imagebuilder:parentImage }}}\n{{{ imagebuilder:environments }}}\n{{{ imagebuilder:components }}}\n";

/// One Dockerfile instruction (continuation lines joined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line where it starts.
    pub line: u64,
    /// 1-based line where it ends (continuations).
    pub end_line: u64,
    /// Upper-cased keyword (`FROM`, `RUN`, …).
    pub keyword: String,
    /// Everything after the keyword, continuations joined with a space.
    pub args: String,
}

/// A `FROM` line's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromLine {
    /// Line of the instruction.
    pub line: u64,
    /// `--platform=` value, if any.
    pub platform: Option<String>,
    /// The image (or earlier stage) as written.
    pub image: String,
    /// `AS name`, lower-cased.
    pub stage: Option<String>,
}

/// Splits a Dockerfile into instructions. Placeholder lines count as
/// instructions with keyword `{{{`.
pub fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current: Option<(u64, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i as u64 + 1;
        let trimmed = raw.trim();
        if current.is_none() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if current.is_some() && trimmed.starts_with('#') {
            continue; // comment inside a continuation
        }
        let (start, mut buf) = current.take().unwrap_or((line_no, String::new()));
        let (body, continued) = match trimmed.strip_suffix('\\') {
            Some(b) => (b.trim_end(), true),
            None => (trimmed, false),
        };
        if !buf.is_empty() && !body.is_empty() {
            buf.push(' ');
        }
        buf.push_str(body);
        if continued {
            current = Some((start, buf));
            continue;
        }
        out.push(split(start, line_no, &buf));
    }
    if let Some((start, buf)) = current {
        let last = text.lines().count() as u64;
        out.push(split(start, last, &buf));
    }
    out
}

fn split(line: u64, end_line: u64, text: &str) -> Instruction {
    if text.starts_with("{{{") {
        return Instruction {
            line,
            end_line,
            keyword: "{{{".into(),
            args: text.to_string(),
        };
    }
    let (kw, args) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    Instruction {
        line,
        end_line,
        keyword: kw.to_ascii_uppercase(),
        args: args.trim().to_string(),
    }
}

/// Parses a `FROM` instruction's arguments.
pub fn parse_from(ins: &Instruction) -> Result<FromLine, String> {
    // `{{{ imagebuilder:parentImage }}}` is one word however it is spaced.
    let mut args = ins.args.clone();
    for (_, _, token) in triple_placeholders(&ins.args) {
        let compact: String = token.chars().filter(|c| !c.is_whitespace()).collect();
        args = args.replace(&token, &compact);
    }
    let mut words = args.split_whitespace().peekable();
    let mut platform = None;
    while let Some(w) = words.peek() {
        if let Some(flag) = w.strip_prefix("--") {
            match flag.split_once('=') {
                Some(("platform", v)) => platform = Some(v.to_string()),
                _ => return Err(format!("unsupported FROM flag `{w}`")),
            }
            words.next();
        } else {
            break;
        }
    }
    let image = words.next().ok_or("FROM needs an image")?.to_string();
    let stage = match (words.next(), words.next(), words.next()) {
        (None, _, _) => None,
        (Some(as_), Some(name), None) if as_.eq_ignore_ascii_case("as") => {
            Some(name.to_ascii_lowercase())
        }
        _ => return Err("expected `FROM image [AS name]`".into()),
    };
    Ok(FromLine {
        line: ins.line,
        platform,
        image,
        stage,
    })
}

/// Every `{{{ … }}}` token in `text` with its 1-based line and column.
pub fn triple_placeholders(text: &str) -> Vec<(u64, u64, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut from = 0;
        while let Some(start) = line[from..].find("{{{") {
            let s = from + start;
            let end = line[s..]
                .find("}}}")
                .map(|e| s + e + 3)
                .unwrap_or(line.len());
            out.push((i as u64 + 1, s as u64 + 1, line[s..end].to_string()));
            from = end;
        }
    }
    out
}

/// Normalises `{{{  imagebuilder:x  }}}` spacing to the canonical form.
pub fn canonical_placeholder(token: &str) -> Option<&'static str> {
    let inner = token.strip_prefix("{{{")?.strip_suffix("}}}")?.trim();
    match inner {
        "imagebuilder:parentImage" => Some(PARENT_IMAGE),
        "imagebuilder:environments" => Some(ENVIRONMENTS),
        "imagebuilder:components" => Some(COMPONENTS),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_continuations_and_skips_comments() {
        let ins = instructions(
            "# c\nFROM a AS b\nRUN echo 1 \\\n  # inner\n  && echo 2\n\nCMD [\"x\"]\n",
        );
        assert_eq!(ins.len(), 3);
        assert_eq!(ins[1].keyword, "RUN");
        assert_eq!(ins[1].args, "echo 1 && echo 2");
        assert_eq!(ins[1].line, 3);
        let f = parse_from(&ins[0]).unwrap();
        assert_eq!((f.image.as_str(), f.stage.as_deref()), ("a", Some("b")));
    }

    #[test]
    fn from_flags() {
        let f = parse_from(&split(1, 1, "FROM --platform=linux/arm64 x:1")).unwrap();
        assert_eq!(f.platform.as_deref(), Some("linux/arm64"));
        assert!(parse_from(&split(1, 1, "FROM x y z")).is_err());
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// An instruction: keyword and argument words.
    fn instruction() -> impl Strategy<Value = (String, Vec<String>)> {
        (
            "[A-Za-z]{1,10}",
            prop::collection::vec("[a-z0-9=./:\"\\[\\]-]{1,8}", 0..6),
        )
    }

    proptest! {
        /// Any text ends without a panic; every instruction's lines lie in
        /// the file and in order.
        #[test]
        fn arbitrary_text_never_panics(text in "(\\PC|\n|\\\\\n|#){0,200}") {
            let lines = text.lines().count() as u64;
            let mut last = 0;
            for ins in instructions(&text) {
                prop_assert!(last < ins.line && ins.line <= ins.end_line && ins.end_line <= lines);
                last = ins.end_line;
                if ins.keyword == "FROM" {
                    let _ = parse_from(&ins);
                }
            }
            let _ = triple_placeholders(&text);
        }

        /// Written instructions, each split over continuation lines at any
        /// word (with a comment inside), parse back to keyword and arguments.
        #[test]
        fn written_instructions_round_trip(
            written in prop::collection::vec((instruction(), any::<prop::sample::Index>()), 1..6)
        ) {
            let mut text = String::from("# a comment\n");
            for ((kw, words), cut) in &written {
                let cut = cut.index(words.len() + 1);
                let (head, tail) = words.split_at(cut);
                text.push_str(&format!("{kw} {}", head.join(" ")));
                if !tail.is_empty() {
                    text.push_str(" \\\n  # inside\n  ");
                    text.push_str(&tail.join(" "));
                }
                text.push_str("\n\n");
            }
            let parsed = instructions(&text);
            prop_assert_eq!(parsed.len(), written.len());
            for (ins, ((kw, words), _)) in parsed.iter().zip(&written) {
                prop_assert_eq!(&ins.keyword, &kw.to_ascii_uppercase());
                prop_assert_eq!(&ins.args, &words.join(" "));
            }
        }
    }
}
