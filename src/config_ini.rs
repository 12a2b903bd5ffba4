//! The configuration file named by `-c/--config` or `ARCHIVEINTERFACE_CONFIG`: our TOML, or the
//! `pacifica-archiveinterface` service file (INI: `[posix]`, `[hpss]`, `[hsm_sideband]`), told apart
//! by content, so that existing start-up lines keep working with the file they already name.
//!
//! The INI file is read as Python's `configparser.ConfigParser` reads it (the reference's reader):
//! `[section]` headers (case-sensitive), `key = value` or `key: value` (keys case-insensitive, first
//! delimiter wins), whole-line `#` and `;` comments, indented continuation lines, `[DEFAULT]` values
//! shared by every section, `%(key)s` / `%%` interpolation, and duplicate sections or keys refused.
//! Its keys map onto ours: `[posix] use_id2filename` is `use_id2filename`; `[hpss]` and
//! `[hsm_sideband]` keys land in the `[hpss]` and `[hsm_sideband]` tables, kept for those backends.
//! As in the reference, unknown sections and keys are ignored, but each one is reported as a warning.

use crate::config::ConfigError;
use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};
use std::path::{Path, PathBuf};

/// The reference's INI sections and keys that mean something here, with how each value is read.
const KNOWN: &[(&str, &[(&str, Kind)])] = &[
    ("posix", &[("use_id2filename", Kind::Bool)]),
    (
        "hpss",
        &[
            ("user", Kind::Text),
            ("auth", Kind::Text),
            ("sitename", Kind::Text),
            ("accept_latency", Kind::Integer),
        ],
    ),
    (
        "hsm_sideband",
        &[
            ("sam_qfs_prefix", Kind::Text),
            ("schema", Kind::Text),
            ("host", Kind::Text),
            ("user", Kind::Text),
            ("password", Kind::Text),
            ("port", Kind::Port),
        ],
    ),
];

/// configparser's section of values every other section falls back on.
const DEFAULT_SECTION: &str = "DEFAULT";
/// configparser's limit on nested `%(key)s` references.
const MAX_INTERPOLATION_DEPTH: usize = 10;

/// How the reference converts a value (`getboolean`, `getint`, `int()` or the plain string).
#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    Bool,
    Integer,
    Port,
}

/// What a configuration file turned out to be.
#[derive(Debug)]
pub(crate) enum ConfigFile {
    /// Our native TOML: merge it with figment's TOML provider.
    Toml,
    /// The reference's INI file, already translated into our keys.
    Ini(IniSettings),
}

/// The settings of an INI file under our key names, with the warnings met while reading it.
#[derive(Debug)]
pub(crate) struct IniSettings {
    path: PathBuf,
    values: Dict,
    /// Unknown sections and keys (ignored, as the reference does) and other things worth a look.
    pub(crate) warnings: Vec<String>,
}

impl Provider for IniSettings {
    fn metadata(&self) -> Metadata {
        Metadata::named("INI file").source(self.path.as_path())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.values.clone()))
    }
}

/// Reads `path` and tells its format from its content. TOML is the native format: a file that is
/// valid TOML for our configuration is TOML. A file that is not, but reads as INI, is the reference's
/// file when it has one of the reference's sections, or no section at all (`[posix]` /
/// `use_id2filename = true` is valid TOML, but not ours). So a broken TOML file is never mistaken
/// for an INI file whose sections are all ignored. A file that is neither stops start-up naming both
/// problems; a valid TOML file with a wrong key or value is reported as such by the loading step.
/// `fits_our_toml` tells whether TOML text alone makes a valid configuration.
pub(crate) fn read(
    path: &Path,
    fits_our_toml: impl Fn(&str) -> bool,
) -> Result<ConfigFile, ConfigError> {
    let fail =
        |why: String| ConfigError::from_message(format!("config file {}: {why}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot be read: {e}")))?;
    let as_toml = text.parse::<toml::Table>();
    if as_toml.is_ok() && fits_our_toml(&text) {
        return Ok(ConfigFile::Toml);
    }
    let as_ini = parse(&text).and_then(|ini| {
        if ini.sections.is_empty() || has_reference_section(&ini) {
            Ok(ini)
        } else {
            Err(
                "none of its sections is one the reference reads ([posix], [hpss], [hsm_sideband])"
                    .to_string(),
            )
        }
    });
    match (as_toml, as_ini) {
        (_, Ok(ini)) => translate(path, &ini).map(ConfigFile::Ini).map_err(fail),
        (Ok(_), Err(_)) => Ok(ConfigFile::Toml),
        (Err(toml_error), Err(ini_error)) => Err(fail(format!(
            "is neither TOML nor an INI service file; as TOML: {}; as INI: {ini_error}",
            toml_problem(&text, &toml_error)
        ))),
    }
}

/// A TOML parse error on one line: `line L, column C: message`.
fn toml_problem(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim();
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |at| at + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_string(),
    }
}

/// Whether an INI file has a section the reference reads.
fn has_reference_section(ini: &Ini) -> bool {
    ini.sections
        .iter()
        .any(|(name, _)| known_keys(name).is_some())
}

fn known_keys(section: &str) -> Option<&'static [(&'static str, Kind)]> {
    KNOWN
        .iter()
        .find(|(name, _)| *name == section)
        .map(|(_, keys)| *keys)
}

/// One `key = value` of an INI file.
#[derive(Debug, Clone)]
struct Entry {
    key: String,
    value: String,
    line: usize,
}

/// An INI file as configparser holds it: sections in file order, and the `[DEFAULT]` values.
#[derive(Debug, Default)]
struct Ini {
    sections: Vec<(String, Vec<Entry>)>,
    defaults: Vec<Entry>,
}

impl Ini {
    /// The raw value of `key` in `section`, falling back on `[DEFAULT]`.
    fn raw<'a>(&'a self, section: &'a [Entry], key: &str) -> Option<&'a Entry> {
        section
            .iter()
            .chain(&self.defaults)
            .find(|entry| entry.key == key)
    }
}

/// Parses INI text the way configparser does (see the module docs); errors name the line.
fn parse(text: &str) -> Result<Ini, String> {
    let mut ini = Ini::default();
    // Where the entries of the current section go: None before the first header.
    let mut current: Option<usize> = None;
    // The key that indented lines continue, and its indentation.
    let mut open: Option<usize> = None;
    for (index, raw_line) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw_line.trim();
        if trimmed.is_empty() {
            open = None;
            continue;
        }
        if trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let indent = raw_line.len() - raw_line.trim_start().len();
        if let (Some(key_indent), Some(section)) = (open, current) {
            if indent > key_indent {
                let entries = entries_of(&mut ini, section);
                if let Some(last) = entries.last_mut() {
                    last.value.push('\n');
                    last.value.push_str(trimmed);
                }
                continue;
            }
        }
        if let Some(header) = section_header(trimmed) {
            if header == DEFAULT_SECTION {
                current = Some(usize::MAX);
            } else if ini.sections.iter().any(|(name, _)| name == header) {
                return Err(format!("line {line}: section [{header}] appears twice"));
            } else {
                ini.sections.push((header.to_string(), Vec::new()));
                current = Some(ini.sections.len() - 1);
            }
            open = None;
            continue;
        }
        let Some(section) = current else {
            return Err(format!(
                "line {line}: {trimmed:?} comes before any [section] header"
            ));
        };
        let Some(at) = trimmed.find(['=', ':']) else {
            return Err(format!(
                "line {line}: {trimmed:?} is not a [section] header, a `key = value` line or a comment"
            ));
        };
        let key = trimmed[..at].trim_end().to_lowercase();
        if key.is_empty() {
            return Err(format!(
                "line {line}: {trimmed:?} has no key before the `=`"
            ));
        }
        let entries = entries_of(&mut ini, section);
        if entries.iter().any(|entry| entry.key == key) {
            return Err(format!(
                "line {line}: key `{key}` appears twice in its section"
            ));
        }
        entries.push(Entry {
            key,
            value: trimmed[at + 1..].trim().to_string(),
            line,
        });
        open = Some(indent);
    }
    Ok(ini)
}

/// `[name]` (name as written, up to the last `]`), as configparser's section pattern matches it.
fn section_header(line: &str) -> Option<&str> {
    let rest = line.strip_prefix('[')?;
    let end = rest.rfind(']')?;
    Some(&rest[..end]).filter(|name| !name.is_empty())
}

fn entries_of(ini: &mut Ini, section: usize) -> &mut Vec<Entry> {
    if section == usize::MAX {
        &mut ini.defaults
    } else {
        &mut ini.sections[section].1
    }
}

/// Maps the reference's keys onto ours, converting each as the reference does, and lists what is
/// ignored. As in the reference, whose sections exist before the file is read, `[DEFAULT]` values
/// reach every known section, present in the file or not.
fn translate(path: &Path, ini: &Ini) -> Result<IniSettings, String> {
    let file = path.display();
    let mut warnings = Vec::new();
    let mut ignored = |what: String| {
        warnings.push(format!(
            "config file {file}: {what} is not used by archiveinterface and is ignored"
        ))
    };
    for (section, entries) in &ini.sections {
        match known_keys(section) {
            None => ignored(format!("section [{section}]")),
            Some(keys) => entries
                .iter()
                .filter(|entry| !keys.iter().any(|(known, _)| *known == entry.key))
                .for_each(|entry| {
                    ignored(format!(
                        "key `{}` in [{section}] (line {})",
                        entry.key, entry.line
                    ))
                }),
        }
    }
    for entry in &ini.defaults {
        if !KNOWN
            .iter()
            .any(|(_, keys)| keys.iter().any(|(known, _)| *known == entry.key))
        {
            ignored(format!(
                "key `{}` in [DEFAULT] (line {})",
                entry.key, entry.line
            ));
        }
    }
    let mut values = Dict::new();
    for (section, keys) in KNOWN {
        let entries = ini
            .sections
            .iter()
            .find(|(name, _)| name == section)
            .map_or(&[][..], |(_, entries)| entries.as_slice());
        let mut table = Dict::new();
        for (key, kind) in *keys {
            let Some(entry) = ini.raw(entries, key) else {
                continue;
            };
            let text = interpolate(ini, entries, &entry.value, 0)
                .map_err(|why| format!("[{section}] {key} (line {}): {why}", entry.line))?;
            if text.len() >= 2 && text.starts_with('"') && text.ends_with('"') {
                warnings.push(format!(
                    "config file {file}: [{section}] {key} (line {}) is in quotes; an INI file keeps \
                     them as part of the value, as the reference does",
                    entry.line
                ));
            }
            let value = convert(&text, *kind).map_err(|why| {
                format!("[{section}] {key} = {text:?} (line {}): {why}", entry.line)
            })?;
            if *section == "posix" {
                // The id mapping is one setting of ours, for every backend.
                values.insert(key.to_string(), value);
            } else {
                table.insert(key.to_string(), value);
            }
        }
        if !table.is_empty() {
            values.insert(section.to_string(), Value::from(table));
        }
    }
    Ok(IniSettings {
        path: path.to_path_buf(),
        values,
        warnings,
    })
}

/// configparser's basic interpolation: `%%` is `%`, `%(key)s` the value of `key` in the same section
/// (or `[DEFAULT]`), any other `%` an error.
fn interpolate(ini: &Ini, section: &[Entry], value: &str, depth: usize) -> Result<String, String> {
    if depth > MAX_INTERPOLATION_DEPTH {
        return Err(format!(
            "more than {MAX_INTERPOLATION_DEPTH} nested %(...)s references"
        ));
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("%%") {
            out.push('%');
            rest = after;
        } else if let Some((name, after)) = rest.strip_prefix("%(").and_then(|r| r.split_once(")s"))
        {
            let name = name.to_lowercase();
            let referenced = ini
                .raw(section, &name)
                .ok_or_else(|| format!("%({name})s names no key of its section"))?;
            out.push_str(&interpolate(ini, section, &referenced.value, depth + 1)?);
            rest = after;
        } else {
            return Err(
                "a '%' must be written '%%' or start a %(key)s reference, as in the reference's \
                 configparser"
                    .to_string(),
            );
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A value as the reference reads it: `getboolean`, `int()`, or the text itself.
fn convert(text: &str, kind: Kind) -> Result<Value, String> {
    match kind {
        Kind::Text => Ok(Value::from(text.to_string())),
        Kind::Bool => match text.to_lowercase().as_str() {
            "1" | "yes" | "true" | "on" => Ok(Value::from(true)),
            "0" | "no" | "false" | "off" => Ok(Value::from(false)),
            _ => Err("not a boolean (true/false, yes/no, on/off, 1/0)".to_string()),
        },
        Kind::Integer => python_int(text)
            .map(Value::from)
            .ok_or_else(|| "not an integer".to_string()),
        Kind::Port => python_int(text)
            .and_then(|n| u16::try_from(n).ok())
            .map(Value::from)
            .ok_or_else(|| "not a port number (0-65535)".to_string()),
    }
}

/// An integer as Python's `int()` reads text: surrounding spaces, a sign, `_` between digits.
fn python_int(text: &str) -> Option<i64> {
    let text = text.trim();
    let digits = text.trim_start_matches(['+', '-']);
    let well_formed = text.len() - digits.len() <= 1
        && !digits.is_empty()
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__")
        && digits.chars().all(|c| c.is_ascii_digit() || c == '_');
    if !well_formed {
        return None;
    }
    text.replace('_', "").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The service file of the reference's documentation, as it is.
    const REFERENCE_INI: &str = "[posix]
; use id2filename method when accessing a posix endpoint
use_id2filename = true
[hpss]
; IBM HPSS HSM settings
auth = /var/hpss/etc/hpss.unix.keytab
sitename = example.com
user = hpss.unix
[hsm_sideband]
; Oracle HSM Sideband database settings (MySQL)
sam_qfs_prefix = /tmp/path
schema = schema_name
host = host
user = user
password = pass
port = 3306
";

    fn read_text(text: &str) -> Result<ConfigFile, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.ini");
        std::fs::write(&path, text).unwrap();
        read(&path, crate::config::Config::fits_toml).map_err(|e| e.to_string())
    }

    fn ini(text: &str) -> IniSettings {
        match read_text(text) {
            Ok(ConfigFile::Ini(settings)) => settings,
            other => panic!("not read as INI: {other:?}"),
        }
    }

    #[test]
    fn the_reference_file_maps_onto_our_keys() {
        let settings = ini(REFERENCE_INI);
        assert!(settings.warnings.is_empty(), "{:?}", settings.warnings);
        let v = &settings.values;
        assert_eq!(v["use_id2filename"], Value::from(true));
        let hpss = v["hpss"].as_dict().unwrap();
        assert_eq!(
            hpss["auth"],
            Value::from("/var/hpss/etc/hpss.unix.keytab".to_string())
        );
        assert_eq!(hpss["sitename"], Value::from("example.com".to_string()));
        assert_eq!(hpss["user"], Value::from("hpss.unix".to_string()));
        let sideband = v["hsm_sideband"].as_dict().unwrap();
        assert_eq!(sideband.len(), 6);
        assert_eq!(sideband["port"], Value::from(3306u16));
        assert_eq!(sideband["password"], Value::from("pass".to_string()));
        assert_eq!(
            sideband["sam_qfs_prefix"],
            Value::from("/tmp/path".to_string())
        );
    }

    #[test]
    fn toml_stays_toml_and_reference_only_files_are_ini() {
        for toml in [
            "port = 9000\n",
            "use_id2filename = true\n[hpss]\nuser = \"x\"\n",
            "[swift]\nenabled = false\n",
            "",
        ] {
            assert!(matches!(read_text(toml), Ok(ConfigFile::Toml)), "{toml:?}");
        }
        // Valid TOML too, but not ours: the reference's file, unknown sections ignored as it does.
        let settings = ini("[posix]\nuse_id2filename = true\n[site]\nowner = 1\n");
        assert_eq!(settings.values["use_id2filename"], Value::from(true));
        assert!(
            settings.warnings[0].contains("[site]"),
            "{:?}",
            settings.warnings
        );
        // Not ours and not the reference's: our TOML, whose loading names the wrong key.
        assert!(matches!(
            read_text("[hlm]\nworkers = \"many\"\n"),
            Ok(ConfigFile::Toml)
        ));
        // configparser spellings TOML does not have.
        // Comments only: nothing to misread.
        assert!(ini("; all defaults\n").values.is_empty());
        let settings = ini("[posix]\nUSE_ID2FILENAME: Yes\n[hpss]\naccept_latency = +1_0\n");
        assert_eq!(settings.values["use_id2filename"], Value::from(true));
        assert_eq!(
            settings.values["hpss"].as_dict().unwrap()["accept_latency"],
            Value::from(10i64)
        );
    }

    #[test]
    fn configparser_details() {
        let settings = ini("[DEFAULT]\nuser = shared\nbase = /srv\n\n[hpss]\n# comment\nauth = %(base)s/keytab\n  continued\nsitename = 100%%\n[hsm_sideband]\nhost = db\n");
        let hpss = settings.values["hpss"].as_dict().unwrap();
        assert_eq!(hpss["user"], Value::from("shared".to_string()));
        assert_eq!(
            hpss["auth"],
            Value::from("/srv/keytab\ncontinued".to_string())
        );
        assert_eq!(hpss["sitename"], Value::from("100%".to_string()));
        let sideband = settings.values["hsm_sideband"].as_dict().unwrap();
        assert_eq!(sideband["user"], Value::from("shared".to_string()));
        assert_eq!(
            settings.warnings.len(),
            1,
            "only `base` is unknown: {:?}",
            settings.warnings
        );
        assert!(
            settings.warnings[0].contains("`base`"),
            "{:?}",
            settings.warnings
        );
    }

    #[test]
    fn unknown_sections_and_keys_are_ignored_with_a_warning() {
        let settings =
            ini("[posix]\nuse_id2filename = false\nfsync = never\n[cherrypy]\nport = 1\n");
        assert_eq!(settings.values.len(), 1, "{:?}", settings.values);
        assert_eq!(settings.warnings.len(), 2, "{:?}", settings.warnings);
        assert!(
            settings.warnings[0].contains("`fsync`") && settings.warnings[0].contains("[posix]")
        );
        assert!(settings.warnings[1].contains("[cherrypy]"));
        let settings = ini("[hpss]\n; the reference keeps quotes\nuser = \"quoted\"\n");
        assert_eq!(
            settings.values["hpss"].as_dict().unwrap()["user"],
            Value::from("\"quoted\"".to_string())
        );
        assert!(
            settings.warnings[0].contains("quotes"),
            "{:?}",
            settings.warnings
        );
    }

    #[test]
    fn bad_values_and_bad_files_name_the_problem() {
        for (text, expected) in [
            ("[posix]\nuse_id2filename = maybe ; no\n", "use_id2filename"),
            ("[hsm_sideband]\n; MySQL\nport = 70000\n", "port number"),
            ("[hpss]\naccept_latency = 5s\n", "accept_latency"),
            ("[hpss]\nauth = 50% off\n", "%%"),
            ("[hpss]\nauth = %(nothing)s\n", "nothing"),
        ] {
            let err = read_text(text).unwrap_err();
            assert!(
                err.contains("config.ini") && err.contains(expected),
                "{text:?}: {err}"
            );
        }
        for (text, toml_says, ini_says) in [
            ("not a config file\n", "line 1", "line 1"),
            ("port = 8080\n[posix\n", "line 2", "before any [section]"),
            ("[hpss]\nuser = a\nuser = b\n", "line 2", "appears twice"),
            ("[posix]\njust words\n", "line 2", "line 2"),
            // Broken TOML is not taken for an INI file whose sections would all be ignored.
            (
                "[swift]\ntoken_secret = unquoted\n",
                "line 2",
                "none of its sections",
            ),
        ] {
            let err = read_text(text).unwrap_err();
            assert!(
                err.contains("config.ini")
                    && err.contains("neither TOML nor an INI")
                    && err.contains(&format!("as TOML: {toml_says}"))
                    && err.contains(ini_says),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn python_integers() {
        for (text, n) in [("5", 5), (" -3 ", -3), ("+1_000", 1000), ("007", 7)] {
            assert_eq!(python_int(text), Some(n), "{text}");
        }
        for text in ["", "5s", "1__0", "_1", "--1", "0x10", "1.0"] {
            assert_eq!(python_int(text), None, "{text}");
        }
    }
}
