//! Reading `ltfsdm info files` output: one line per file, `"%c %20d %20d %20s  %s\n"` (state letter,
//! size, blocks, tape ids, two spaces, canonical absolute path to the end of the line), after one
//! header line. Parsed by its columns, never by splitting on whitespace, so that a path with spaces
//! (even at its end) comes back whole. Paths are bytes: a file name need not be UTF-8.

use archive_core::HsmState;

/// What `info files` says about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileInfo {
    /// The state letter as printed.
    pub(crate) letter: u8,
    /// Size in bytes.
    pub(crate) size: u64,
    /// Tape ids of the copies, first copy first (empty when printed as `-`).
    pub(crate) tapes: Vec<String>,
    /// The canonical absolute path.
    pub(crate) path: Vec<u8>,
}

impl FileInfo {
    /// `m` migrated, `p` premigrated, `r` resident; `-` (not a regular file, or its attributes could
    /// not be read) and blank (a state LTFS DM does not know) are unknown.
    pub(crate) fn state(&self) -> HsmState {
        state_of_letter(self.letter)
    }
}

/// The HSM state an `info files` state letter stands for.
pub(crate) fn state_of_letter(letter: u8) -> HsmState {
    match letter {
        b'm' => HsmState::Migrated,
        b'p' => HsmState::Premigrated,
        b'r' => HsmState::Resident,
        _ => HsmState::Unknown,
    }
}

/// The parsed lines, and the lines that were neither the header nor a file (kept for logging: a
/// message LTFS DM printed among the rows).
#[derive(Debug, Default)]
pub(crate) struct InfoFiles {
    pub(crate) files: Vec<FileInfo>,
    pub(crate) other_lines: Vec<String>,
}

/// Parses the whole standard output of `ltfsdm info files`.
pub(crate) fn parse_info_files(stdout: &[u8]) -> InfoFiles {
    let mut out = InfoFiles::default();
    for line in stdout.split(|b| *b == b'\n') {
        if line.is_empty() || is_header(line) {
            continue;
        }
        match parse_line(line) {
            Some(info) => out.files.push(info),
            None => out
                .other_lines
                .push(String::from_utf8_lossy(line).into_owned()),
        }
    }
    out
}

fn is_header(line: &[u8]) -> bool {
    line.starts_with(b"state ") && line.ends_with(b"file name")
}

/// One file line: the state letter in column 0 and a space, then size, blocks and tape ids (each
/// right-aligned in 20 columns, wider when a value needs it), then exactly two spaces and the path.
fn parse_line(line: &[u8]) -> Option<FileInfo> {
    let (&letter, rest) = line.split_first()?;
    let rest = rest.strip_prefix(b" ")?;
    let (size, rest) = field(rest)?;
    let (blocks, rest) = field(rest)?;
    let (tapes, rest) = field(rest)?;
    let path = rest.strip_prefix(b"  ")?;
    if !path.starts_with(b"/") {
        return None;
    }
    let size = std::str::from_utf8(size).ok()?.parse().ok()?;
    std::str::from_utf8(blocks).ok()?.parse::<i64>().ok()?;
    let tapes = match std::str::from_utf8(tapes).ok()? {
        "-" => Vec::new(),
        ids => ids.split(',').map(str::to_string).collect(),
    };
    Some(FileInfo {
        letter,
        size,
        tapes,
        path: path.to_vec(),
    })
}

/// The next right-aligned field: leading spaces, then a token without spaces.
fn field(text: &[u8]) -> Option<(&[u8], &[u8])> {
    let start = text.iter().position(|b| *b != b' ')?;
    let text = &text[start..];
    let end = text.iter().position(|b| *b == b' ').unwrap_or(text.len());
    (end > 0).then(|| text.split_at(end))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line exactly as `ltfsdm` prints it.
    fn row(letter: char, size: u64, blocks: u64, tapes: &str, path: &str) -> String {
        format!("{letter} {size:>20} {blocks:>20} {tapes:>20}  {path}\n")
    }

    #[test]
    fn the_documented_example_and_header_parse() {
        let text = "state             size               blocks              tape id  file name\n\
                    m          47049088000                    8             D01301L5  /mnt/lxfs/bigfile\n";
        let parsed = parse_info_files(text.as_bytes());
        assert!(parsed.other_lines.is_empty(), "{:?}", parsed.other_lines);
        assert_eq!(
            parsed.files,
            [FileInfo {
                letter: b'm',
                size: 47_049_088_000,
                tapes: vec!["D01301L5".into()],
                path: b"/mnt/lxfs/bigfile".to_vec(),
            }]
        );
        assert_eq!(parsed.files[0].state(), HsmState::Migrated);
    }

    #[test]
    fn paths_with_spaces_quotes_and_unicode_come_back_whole() {
        let names = [
            "/fs/a b/c  d ",
            "/fs/it's \"quoted\"",
            "/fs/ünïcødé ✓/файл",
            "/fs/  leading",
        ];
        let text: String = names
            .iter()
            .map(|n| row('p', 5, 8, "D01301L5,D01302L5", n))
            .collect();
        let parsed = parse_info_files(text.as_bytes());
        let paths: Vec<String> = parsed
            .files
            .iter()
            .map(|f| String::from_utf8(f.path.clone()).unwrap())
            .collect();
        assert_eq!(paths, names);
        assert_eq!(parsed.files[0].tapes, ["D01301L5", "D01302L5"]);
    }

    #[test]
    fn every_state_letter_and_wide_tape_lists() {
        let three = "D01301L5,D01302L5,D01303L5"; // wider than its 20 columns
        let text = [
            row('r', 1, 8, "-", "/fs/r"),
            row('p', 2, 8, three, "/fs/p"),
            row('m', 3, 0, "D01301L5", "/fs/m"),
            row('-', 4, 0, "-", "/fs/dash"),
            row(' ', 5, 0, "-", "/fs/blank"),
        ]
        .concat();
        let parsed = parse_info_files(text.as_bytes());
        let states: Vec<HsmState> = parsed.files.iter().map(FileInfo::state).collect();
        use HsmState::*;
        assert_eq!(states, [Resident, Premigrated, Migrated, Unknown, Unknown]);
        assert_eq!(parsed.files[1].tapes.len(), 3);
        assert!(parsed.files[0].tapes.is_empty());
        assert_eq!(parsed.files[4].size, 5);
    }

    #[test]
    fn other_lines_are_kept_apart_and_non_utf8_paths_parse() {
        let mut text = b"LTFSDMC0026E(0070): something else\n".to_vec();
        text.extend_from_slice(row('r', 1, 8, "-", "/fs/x").as_bytes());
        text.extend_from_slice(
            b"r                    1                    8                    -  /fs/\xff\xfe\n",
        );
        let parsed = parse_info_files(&text);
        assert_eq!(parsed.other_lines.len(), 1);
        assert_eq!(parsed.files.len(), 2);
        assert_eq!(parsed.files[1].path, b"/fs/\xff\xfe");
    }
}
