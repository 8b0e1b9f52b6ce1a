//! Parts of the parser that every table uses: document fields with their lines, the collected
//! errors and warnings, readers of typed values, and suggestions for unknown keys.

use std::fs::{self, File};
use std::ops::{Range, RangeInclusive};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml_edit::{Item, Table, TableLike, TomlError, Value};

use crate::config::{ConfigError, Mode};

/// Known keys of one kind of table, each with the example shown when it is wrong.
pub(super) type Keys = &'static [(&'static str, &'static str)];

/// Unknown keys that are common names for a known key, with the key they mean.
const ALIASES: [(&str, &str); 7] = [
    ("user", "username"),
    ("password", "password_file"),
    ("server", "host"),
    ("hostname", "host"),
    ("recipients", "to"),
    ("sender", "from"),
    ("relays", "relay"),
];

/// Maximum length in bytes of a Unix socket path: `sun_path` is 108 bytes on Linux, including
/// the NUL.
pub(super) const MAX_SOCKET_PATH: usize = 107;

/// One key of the document with its location. Array elements are fields too, named by their
/// array's key and found at their own line.
pub(super) struct Field<'a> {
    /// Key as written in its table.
    pub(super) name: &'a str,
    /// Dotted path from the root, such as `services.dovecot.mode` or `alerts.relay[1].port`.
    pub(super) path: String,
    /// 1-based line of the key.
    pub(super) key_line: usize,
    /// 1-based line of the value; the key's line when the value has no span.
    pub(super) line: usize,
    pub(super) node: Node<'a>,
    /// Valid example for this key; empty when the key is unknown.
    example: &'static str,
}

/// A value in the document: `toml_edit` stores table entries, array elements and the tables of
/// an array of tables as three different types.
#[derive(Clone, Copy)]
pub(super) enum Node<'a> {
    Item(&'a Item),
    Value(&'a Value),
    Table(&'a Table),
}

impl<'a> Node<'a> {
    pub(super) fn value(self) -> Option<&'a Value> {
        match self {
            Node::Item(item) => item.as_value(),
            Node::Value(value) => Some(value),
            Node::Table(_) => None,
        }
    }

    pub(super) fn table(self) -> Option<&'a dyn TableLike> {
        match self {
            Node::Item(item) => item.as_table_like(),
            Node::Value(value) => value.as_inline_table().map(|table| table as &dyn TableLike),
            Node::Table(table) => Some(table),
        }
    }

    fn type_name(self) -> &'static str {
        match self {
            Node::Item(item) => item.type_name(),
            Node::Value(value) => value.type_name(),
            Node::Table(_) => "table",
        }
    }

    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Item(item) => item.span(),
            Node::Value(value) => value.span(),
            Node::Table(table) => table.span(),
        }
    }
}

/// Collects errors and warnings while the document is walked.
pub(super) struct Checker<'t> {
    pub(super) file: PathBuf,
    text: &'t str,
    /// Byte offset where each line starts, for turning spans into line numbers.
    line_starts: Vec<usize>,
    pub(super) errors: Vec<ConfigError>,
    pub(super) warnings: Vec<ConfigError>,
}

impl<'t> Checker<'t> {
    pub(super) fn new(file: &Path, text: &'t str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(offset, _)| offset + 1))
            .collect();
        Checker {
            file: file.to_path_buf(),
            text,
            line_starts,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// 1-based line of a byte offset.
    pub(super) fn line(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= offset)
    }

    fn problem(&self, line: usize, key: &str, message: String, example: &str) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line,
            key: key.to_string(),
            message,
            example: (!example.is_empty()).then(|| example.to_string()),
        }
    }

    pub(super) fn error(&mut self, line: usize, key: &str, message: String, example: &str) {
        let problem = self.problem(line, key, message, example);
        self.errors.push(problem);
    }

    pub(super) fn warn(&mut self, line: usize, key: &str, message: String, example: &str) {
        let problem = self.problem(line, key, message, example);
        self.warnings.push(problem);
    }

    pub(super) fn syntax_error(&self, err: &TomlError) -> ConfigError {
        let offset = err.span().map_or(0, |span| span.start);
        let line = self.line(offset);
        let line_start = self.line_starts.get(line - 1).copied().unwrap_or(0);
        let column = self
            .text
            .get(line_start..offset)
            .map_or(1, |before| before.chars().count() + 1);
        let detail = err
            .message()
            .lines()
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        self.problem(
            line,
            "",
            format!("invalid TOML at column {column}: {detail}"),
            "",
        )
    }

    /// Lists the entries of a table as fields under `prefix`, with each known key's example.
    pub(super) fn fields<'a>(
        &self,
        table: &'a dyn TableLike,
        prefix: &str,
        table_line: usize,
        known: &[Keys],
    ) -> Vec<Field<'a>> {
        table
            .iter()
            .map(|(name, item)| {
                let key_line = table
                    .key(name)
                    .and_then(|key| key.span())
                    .map_or(table_line, |span| self.line(span.start));
                let line = item.span().map_or(key_line, |span| self.line(span.start));
                let example = known_example(known, name);
                Field {
                    name,
                    path: join_key(prefix, name),
                    key_line,
                    line,
                    node: Node::Item(item),
                    example,
                }
            })
            .collect()
    }

    /// Lists the elements of an array or array of tables as fields, or `None` for any other
    /// value.
    pub(super) fn elements<'a>(&self, field: &Field<'a>) -> Option<Vec<Field<'a>>> {
        let element = |index: usize, node: Node<'a>| {
            let line = node.span().map_or(field.line, |span| self.line(span.start));
            Field {
                name: field.name,
                path: format!("{}[{index}]", field.path),
                key_line: line,
                line,
                node,
                example: field.example,
            }
        };
        if let Node::Item(Item::ArrayOfTables(array)) = field.node {
            return Some(
                array
                    .iter()
                    .enumerate()
                    .map(|(index, table)| element(index, Node::Table(table)))
                    .collect(),
            );
        }
        let array = field.node.value()?.as_array()?;
        Some(
            array
                .iter()
                .enumerate()
                .map(|(index, value)| element(index, Node::Value(value)))
                .collect(),
        )
    }

    /// Describes a value for "found ..." in a message: its type, and its text when short.
    pub(super) fn describe(&self, node: Node<'_>) -> String {
        let kind = node.type_name();
        let scalar = node
            .value()
            .is_some_and(|value| !value.is_array() && !value.is_inline_table());
        let text = node
            .span()
            .and_then(|span| self.text.get(span))
            .filter(|text| scalar && text.len() <= 40 && !text.contains('\n'));
        match text {
            Some(text) => format!("{kind} {text}"),
            None => kind.to_string(),
        }
    }

    pub(super) fn wrong_type(&mut self, field: &Field<'_>, expected: &str) {
        let found = self.describe(field.node);
        self.error(
            field.line,
            &field.path,
            format!("expected {expected}, found {found}"),
            field.example,
        );
    }

    pub(super) fn invalid(&mut self, field: &Field<'_>, message: String) {
        self.error(field.line, &field.path, message, field.example);
    }

    pub(super) fn unknown_key(&mut self, field: &Field<'_>, known: &[Keys]) {
        let names: Vec<&str> = known
            .iter()
            .flat_map(|keys| keys.iter())
            .map(|(key, _)| *key)
            .collect();
        match closest_key(field.name, &names) {
            Some(suggestion) => {
                let example = known_example(known, suggestion);
                self.error(
                    field.key_line,
                    &field.path,
                    format!("unknown key `{}`; did you mean `{suggestion}`?", field.name),
                    example,
                );
            }
            None => self.error(
                field.key_line,
                &field.path,
                format!(
                    "unknown key `{}`; the keys allowed here are: {}",
                    field.name,
                    names.join(", ")
                ),
                "",
            ),
        }
    }

    pub(super) fn table<'a>(
        &mut self,
        field: &Field<'a>,
        expected: &str,
    ) -> Option<&'a dyn TableLike> {
        let table = field.node.table();
        if table.is_none() {
            self.wrong_type(field, expected);
        }
        table
    }

    pub(super) fn string<'a>(&mut self, field: &Field<'a>) -> Option<&'a str> {
        let string = field.node.value().and_then(Value::as_str);
        if string.is_none() {
            self.wrong_type(field, "a string");
        }
        string
    }

    /// Reads a string that is not empty and has no whitespace or control characters.
    pub(super) fn word<'a>(&mut self, field: &Field<'a>) -> Option<&'a str> {
        let word = self.string(field)?;
        if word.is_empty() {
            self.invalid(field, "must not be empty".to_string());
            return None;
        }
        if word.chars().any(|c| c.is_whitespace() || c.is_control()) {
            self.invalid(
                field,
                format!("{word:?} must not contain spaces or control characters"),
            );
            return None;
        }
        Some(word)
    }

    pub(super) fn boolean(&mut self, field: &Field<'_>) -> Option<bool> {
        let boolean = field.node.value().and_then(Value::as_bool);
        if boolean.is_none() {
            self.wrong_type(field, "true or false");
        }
        boolean
    }

    pub(super) fn integer(&mut self, field: &Field<'_>, range: RangeInclusive<i64>) -> Option<i64> {
        let Some(number) = field.node.value().and_then(Value::as_integer) else {
            self.wrong_type(field, "an integer");
            return None;
        };
        if !range.contains(&number) {
            let mut message = format!(
                "must be from {} to {}, found {number}",
                range.start(),
                range.end()
            );
            if field.name == "max_restarts" && number == 0 {
                message.push_str(r#"; to never restart a service, set mode = "watch""#);
            }
            self.invalid(field, message);
            return None;
        }
        Some(number)
    }

    /// Reads a count such as `max_restarts`, within `range`.
    pub(super) fn count(&mut self, field: &Field<'_>, range: RangeInclusive<i64>) -> Option<u32> {
        self.integer(field, range)
            .and_then(|number| u32::try_from(number).ok())
    }

    /// Reads a duration written as a string with units ("30s", "5min", "500ms").
    pub(super) fn duration(&mut self, field: &Field<'_>, allow_zero: bool) -> Option<Duration> {
        let text = match field.node.value() {
            Some(Value::String(text)) => text.value(),
            Some(Value::Integer(number)) => {
                let number = number.value();
                self.invalid(
                    field,
                    format!(
                        "a duration needs a unit, found the bare number {number}; \
                         write it as a string such as \"{number}s\""
                    ),
                );
                return None;
            }
            _ => {
                self.wrong_type(field, "a duration string such as \"30s\"");
                return None;
            }
        };
        let vague_unit = text
            .split(|c: char| !c.is_ascii_alphabetic())
            .find(|unit| matches!(*unit, "M" | "month" | "months" | "y" | "year" | "years"));
        if let Some(unit) = vague_unit {
            self.invalid(
                field,
                format!(
                    "invalid duration \"{text}\": the unit \"{unit}\" means months or years, \
                     which have no fixed length (\"M\" is months, not minutes); write days \
                     (\"30d\") or minutes (\"30min\")"
                ),
            );
            return None;
        }
        match humantime::parse_duration(text) {
            Ok(duration) if duration.is_zero() && !allow_zero => {
                self.invalid(
                    field,
                    format!("must be greater than zero, found \"{text}\""),
                );
                None
            }
            Ok(duration) => Some(duration),
            Err(err) => {
                self.invalid(
                    field,
                    format!(
                        "invalid duration \"{text}\": {err}; write a number with a unit \
                         such as ms, s, min or h"
                    ),
                );
                None
            }
        }
    }

    pub(super) fn mode(&mut self, field: &Field<'_>) -> Option<Mode> {
        match self.string(field)? {
            "heal" => Some(Mode::Heal),
            "watch" => Some(Mode::Watch),
            other => {
                self.invalid(
                    field,
                    format!("invalid mode \"{other}\"; expected \"heal\" or \"watch\""),
                );
                None
            }
        }
    }

    /// Reads an absolute path. The daemon runs from `/`, so a relative path would not mean what
    /// it means in the admin's shell.
    pub(super) fn absolute_path(&mut self, field: &Field<'_>) -> Option<PathBuf> {
        let text = self.string(field)?;
        if !text.starts_with('/') {
            self.invalid(
                field,
                format!("must be an absolute path starting with /, found \"{text}\""),
            );
            return None;
        }
        Some(PathBuf::from(text))
    }

    pub(super) fn socket_path(&mut self, field: &Field<'_>) -> Option<PathBuf> {
        let path = self.absolute_path(field)?;
        let length = path.as_os_str().len();
        if length > MAX_SOCKET_PATH {
            self.invalid(
                field,
                format!(
                    "is {length} bytes long, but a Unix socket path holds at most \
                     {MAX_SOCKET_PATH} bytes"
                ),
            );
            return None;
        }
        Some(path)
    }

    /// Reads one string or an array of strings.
    pub(super) fn string_list(&mut self, field: &Field<'_>) -> Option<Vec<String>> {
        if let Some(text) = field.node.value().and_then(Value::as_str) {
            return Some(vec![text.to_string()]);
        }
        let Some(elements) = self.elements(field) else {
            self.wrong_type(field, "a string or an array of strings");
            return None;
        };
        let mut list = Vec::new();
        for element in &elements {
            if let Some(text) = self.string(element) {
                list.push(text.to_string());
            }
        }
        (list.len() == elements.len()).then_some(list)
    }

    /// Reads a command: a string split on whitespace, or an array of arguments. No shell runs
    /// it.
    pub(super) fn command(&mut self, field: &Field<'_>) -> Option<Vec<String>> {
        if let Some(text) = field.node.value().and_then(Value::as_str) {
            if text.contains(['"', '\'', '\\', '|', ';', '&', '$', '>', '<']) {
                self.invalid(
                    field,
                    format!(
                        "command \"{text}\" contains quotes or shell syntax, but a command \
                         string is only split on whitespace and never run by a shell; \
                         write it as an array of arguments"
                    ),
                );
                return None;
            }
            let command: Vec<String> = text.split_whitespace().map(str::to_string).collect();
            if command.is_empty() {
                self.invalid(field, "command must not be empty".to_string());
                return None;
            }
            return Some(command);
        }
        let Some(elements) = self.elements(field) else {
            self.wrong_type(field, "a command string or an array of arguments");
            return None;
        };
        if elements.is_empty() {
            self.invalid(field, "command must not be empty".to_string());
            return None;
        }
        let mut command = Vec::new();
        for element in &elements {
            if let Some(argument) = self.string(element) {
                command.push(argument.to_string());
            }
        }
        if command.first().is_some_and(|program| program.is_empty()) {
            self.invalid(field, "the program name must not be empty".to_string());
            return None;
        }
        (command.len() == elements.len()).then_some(command)
    }

    /// Checks that a file with a secret can be read now, and warns when other users can read
    /// it. `noun` names the file in messages, such as "password file". Returns whether the file
    /// is readable.
    pub(super) fn check_secret_file(&mut self, field: &Field<'_>, path: &Path, noun: &str) -> bool {
        let display = path.display();
        let metadata = match fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(err) => {
                self.invalid(field, format!("cannot read {noun} {display}: {err}"));
                return false;
            }
        };
        if !metadata.is_file() {
            self.invalid(field, format!("{noun} {display} is not a regular file"));
            return false;
        }
        if let Err(err) = File::open(path) {
            self.invalid(
                field,
                format!(
                    "cannot read {noun} {display}: {err}; make it readable by the user \
                     selfheal runs as"
                ),
            );
            return false;
        }
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            self.warn(
                field.line,
                &field.path,
                format!(
                    "{noun} {display} has mode {mode:04o}, so other users may read it; \
                     run `chmod 600 {display}`"
                ),
                "",
            );
        }
        true
    }
}

/// Returns the example of a key in `keys`; empty when `keys` does not have it.
pub(super) fn example_of(keys: Keys, name: &str) -> &'static str {
    keys.iter()
        .find(|(key, _)| *key == name)
        .map_or("", |(_, example)| *example)
}

/// Returns the example of a key in any of the `known` key lists; empty when none has it.
pub(super) fn known_example(known: &[Keys], name: &str) -> &'static str {
    known
        .iter()
        .map(|keys| example_of(keys, name))
        .find(|example| !example.is_empty())
        .unwrap_or("")
}

/// Appends a key to a dotted path, quoting it when it is not a bare TOML key.
pub(super) fn join_key(prefix: &str, name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let name = if bare {
        name.to_string()
    } else {
        format!("{name:?}")
    };
    if prefix.is_empty() {
        name
    } else {
        format!("{prefix}.{name}")
    }
}

/// Finds the known key that an unknown key most likely means: a common alias, or the nearest key by
/// edit distance when the distance is small for the key's length.
pub(in crate::config) fn closest_key<'k>(unknown: &str, known: &[&'k str]) -> Option<&'k str> {
    if let Some((_, meant)) = ALIASES.iter().find(|(alias, _)| *alias == unknown) {
        if let Some(key) = known.iter().find(|key| *key == meant) {
            return Some(key);
        }
    }
    let length = unknown.chars().count();
    let max_distance = match length {
        0..=4 => 1,
        5..=10 => 2,
        _ => 3,
    };
    known
        .iter()
        .map(|key| (edit_distance(unknown, key), *key))
        .filter(|(distance, _)| *distance <= max_distance)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, key)| key)
}

/// Edit distance in characters, counting a swap of two adjacent characters as one edit
/// (optimal string alignment), because swapped letters are a common typo.
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // distances[i][j] is the distance between the first i characters of a and the first j of b.
    let mut distances = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in distances.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in distances[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut distance = (distances[i - 1][j] + 1)
                .min(distances[i][j - 1] + 1)
                .min(distances[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                distance = distance.min(distances[i - 2][j - 2] + 1);
            }
            distances[i][j] = distance;
        }
    }
    distances[a.len()][b.len()]
}
