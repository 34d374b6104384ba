//! Line editing for the serial shell: backspace, Ctrl-C, Ctrl-U, and history on the arrow keys.

use core::fmt::Write;

/// Longest command line accepted (bytes).
pub const MAX_LINE: usize = 256;
/// Lines kept in the history.
pub const HISTORY_LENGTH: usize = 16;

/// A fixed-capacity line of text.
#[derive(Clone, Copy)]
pub struct Line {
    bytes: [u8; MAX_LINE],
    length: usize,
}

impl Line {
    const fn empty() -> Self {
        Line { bytes: [0; MAX_LINE], length: 0 }
    }

    /// The text (input is restricted to printable ASCII, so this never fails).
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.length]).unwrap_or("")
    }

    fn is_empty(&self) -> bool {
        self.length == 0
    }
}

/// What the editor did with a byte.
#[derive(Debug, PartialEq, Eq)]
pub enum EditEvent {
    /// Keep feeding bytes.
    Continue,
    /// The line was dropped (Ctrl-C); print a new prompt.
    Cancelled,
    /// A line is complete; take it with [`LineEditor::take_line`].
    Line,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum EscapeState {
    None,
    Escape,
    ControlSequence,
}

/// The editor state: the current line, the escape-sequence parser and the history ring.
pub struct LineEditor {
    line: Line,
    escape: EscapeState,
    last_was_carriage_return: bool,
    history: [Line; HISTORY_LENGTH],
    history_count: usize,
    history_next: usize,
    /// How far back the arrow keys have gone (0: the line being typed).
    browsing: usize,
    saved_line: Line,
}

impl Default for LineEditor {
    fn default() -> Self {
        Self::new()
    }
}

impl LineEditor {
    /// An empty editor with empty history.
    pub const fn new() -> Self {
        LineEditor {
            line: Line::empty(),
            escape: EscapeState::None,
            last_was_carriage_return: false,
            history: [Line::empty(); HISTORY_LENGTH],
            history_count: 0,
            history_next: 0,
            browsing: 0,
            saved_line: Line::empty(),
        }
    }

    /// Returns the completed line, records it in the history and starts a new one.
    pub fn take_line(&mut self) -> Line {
        let line = self.line;
        if !line.is_empty() && self.history_entry(1).map(|h| h.as_str()) != Some(line.as_str()) {
            self.history[self.history_next] = line;
            self.history_next = (self.history_next + 1) % HISTORY_LENGTH;
            self.history_count = (self.history_count + 1).min(HISTORY_LENGTH);
        }
        self.line = Line::empty();
        self.browsing = 0;
        line
    }

    /// History entry `back` steps back (1 = newest).
    fn history_entry(&self, back: usize) -> Option<&Line> {
        if back == 0 || back > self.history_count {
            return None;
        }
        Some(&self.history[(self.history_next + HISTORY_LENGTH - back) % HISTORY_LENGTH])
    }

    /// Feeds one input byte; echo and redraw output goes to `echo`.
    pub fn feed(&mut self, byte: u8, echo: &mut dyn Write) -> EditEvent {
        let after_carriage_return = core::mem::replace(&mut self.last_was_carriage_return, byte == b'\r');
        match self.escape {
            EscapeState::Escape => {
                self.escape = if byte == b'[' || byte == b'O' { EscapeState::ControlSequence } else { EscapeState::None };
                return EditEvent::Continue;
            }
            EscapeState::ControlSequence => {
                // Parameters and intermediates continue the sequence; a final byte ends it.
                if (0x40..=0x7e).contains(&byte) {
                    self.escape = EscapeState::None;
                    match byte {
                        b'A' => self.browse(1, echo),
                        b'B' => self.browse(-1, echo),
                        _ => {}
                    }
                }
                return EditEvent::Continue;
            }
            EscapeState::None => {}
        }
        match byte {
            b'\r' => {
                let _ = echo.write_str("\r\n");
                EditEvent::Line
            }
            b'\n' if after_carriage_return => EditEvent::Continue,
            b'\n' => {
                let _ = echo.write_str("\r\n");
                EditEvent::Line
            }
            0x1b => {
                self.escape = EscapeState::Escape;
                EditEvent::Continue
            }
            0x03 => {
                let _ = echo.write_str("^C\r\n");
                self.line = Line::empty();
                self.browsing = 0;
                EditEvent::Cancelled
            }
            0x15 => {
                self.erase_displayed(echo);
                self.line = Line::empty();
                EditEvent::Continue
            }
            0x08 | 0x7f => {
                if self.line.length > 0 {
                    self.line.length -= 1;
                    let _ = echo.write_str("\x08 \x08");
                }
                EditEvent::Continue
            }
            0x20..=0x7e => {
                if self.line.length < MAX_LINE {
                    self.line.bytes[self.line.length] = byte;
                    self.line.length += 1;
                    let _ = echo.write_char(byte as char);
                } else {
                    let _ = echo.write_char('\x07');
                }
                EditEvent::Continue
            }
            _ => EditEvent::Continue,
        }
    }

    fn erase_displayed(&self, echo: &mut dyn Write) {
        for _ in 0..self.line.length {
            let _ = echo.write_str("\x08 \x08");
        }
    }

    fn browse(&mut self, direction: isize, echo: &mut dyn Write) {
        let target = self.browsing as isize + direction;
        if target < 0 || target as usize > self.history_count {
            let _ = echo.write_char('\x07');
            return;
        }
        if self.browsing == 0 {
            self.saved_line = self.line;
        }
        self.erase_displayed(echo);
        self.browsing = target as usize;
        self.line = match self.history_entry(self.browsing) {
            Some(entry) => *entry,
            None => self.saved_line,
        };
        let _ = echo.write_str(self.line.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn type_bytes(editor: &mut LineEditor, input: &[u8]) -> (Vec<EditEvent>, String) {
        let mut echo = String::new();
        let events = input.iter().map(|&b| editor.feed(b, &mut echo)).collect();
        (events, echo)
    }

    #[test]
    fn enter_completes_a_line() {
        let mut editor = LineEditor::new();
        let (events, echo) = type_bytes(&mut editor, b"uname -a\r");
        assert_eq!(events.last(), Some(&EditEvent::Line));
        assert_eq!(echo, "uname -a\r\n");
        assert_eq!(editor.take_line().as_str(), "uname -a");
    }

    #[test]
    fn carriage_return_newline_is_one_line() {
        let mut editor = LineEditor::new();
        let (events, _) = type_bytes(&mut editor, b"a\r\n");
        assert_eq!(events.iter().filter(|e| **e == EditEvent::Line).count(), 1);
    }

    #[test]
    fn backspace_and_ctrl_u_edit() {
        let mut editor = LineEditor::new();
        type_bytes(&mut editor, b"ecxx\x7f\x08ho hi\r");
        assert_eq!(editor.take_line().as_str(), "echo hi");
        type_bytes(&mut editor, b"garbage\x15ls\r");
        assert_eq!(editor.take_line().as_str(), "ls");
        let (_, echo) = type_bytes(&mut editor, b"\x7f");
        assert_eq!(echo, "", "backspace on an empty line erases nothing");
    }

    #[test]
    fn ctrl_c_drops_the_line() {
        let mut editor = LineEditor::new();
        let (events, echo) = type_bytes(&mut editor, b"rm all\x03");
        assert_eq!(events.last(), Some(&EditEvent::Cancelled));
        assert!(echo.ends_with("^C\r\n"));
        type_bytes(&mut editor, b"\r");
        assert_eq!(editor.take_line().as_str(), "");
    }

    #[test]
    fn arrows_walk_the_history() {
        let mut editor = LineEditor::new();
        for command in ["one", "two", "three"] {
            type_bytes(&mut editor, command.as_bytes());
            type_bytes(&mut editor, b"\r");
            editor.take_line();
        }
        type_bytes(&mut editor, b"par");
        type_bytes(&mut editor, b"\x1b[A\x1b[A");
        type_bytes(&mut editor, b"\r");
        assert_eq!(editor.take_line().as_str(), "two");
        type_bytes(&mut editor, b"x\x1b[A\x1b[B\r");
        assert_eq!(editor.take_line().as_str(), "x", "down past the newest restores the typed line");
        let (_, echo) = type_bytes(&mut editor, b"\x1b[B");
        assert_eq!(echo, "\x07", "down with nothing newer rings the bell");
    }

    #[test]
    fn history_keeps_the_newest_and_skips_repeats() {
        let mut editor = LineEditor::new();
        for index in 0..(HISTORY_LENGTH + 5) {
            type_bytes(&mut editor, format!("cmd{}\r", index).as_bytes());
            editor.take_line();
            type_bytes(&mut editor, format!("cmd{}\r", index).as_bytes());
            editor.take_line();
        }
        assert_eq!(editor.history_count, HISTORY_LENGTH);
        assert_eq!(editor.history_entry(1).unwrap().as_str(), format!("cmd{}", HISTORY_LENGTH + 4));
        assert_eq!(editor.history_entry(2).unwrap().as_str(), format!("cmd{}", HISTORY_LENGTH + 3));
    }

    #[test]
    fn overlong_lines_and_control_bytes_are_refused() {
        let mut editor = LineEditor::new();
        let (_, echo) = type_bytes(&mut editor, &[b'a'; MAX_LINE + 3]);
        assert!(echo.ends_with("\x07\x07\x07"));
        type_bytes(&mut editor, &[0x00, 0x01, 0xff, 0x09]);
        type_bytes(&mut editor, b"\r");
        assert_eq!(editor.take_line().as_str().len(), MAX_LINE);
    }

    #[test]
    fn unknown_escape_sequences_are_swallowed() {
        let mut editor = LineEditor::new();
        type_bytes(&mut editor, b"a\x1b[1;5Cb\x1b[3~c\x1bOHd\r");
        assert_eq!(editor.take_line().as_str(), "abcd");
    }
}
