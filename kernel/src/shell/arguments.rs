//! Splitting a command line into arguments, with single and double quotes.

use core::fmt;

/// Most arguments one command line may have.
pub const MAX_ARGUMENTS: usize = 32;

/// The arguments of one command, `[0]` being the command name.
pub type Arguments<'a> = [&'a str];

/// Why a command line could not be split.
#[derive(Debug, PartialEq, Eq)]
pub enum SplitError {
    /// A quote was opened and not closed.
    UnterminatedQuote,
    /// More than [`MAX_ARGUMENTS`] words.
    TooManyArguments,
    /// The unquoted text does not fit the scratch buffer.
    TooLong,
}

impl fmt::Display for SplitError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            SplitError::UnterminatedQuote => "unterminated quote",
            SplitError::TooManyArguments => "too many arguments",
            SplitError::TooLong => "command line too long",
        })
    }
}

/// Splits `line` at unquoted whitespace. Quotes group words and are removed; the unquoted
/// text is written to `scratch`, and `storage` receives slices of it.
pub fn split_arguments<'a>(
    line: &str,
    storage: &'a mut [&'a str; MAX_ARGUMENTS],
    scratch: &'a mut [u8],
) -> Result<&'a [&'a str], SplitError> {
    let mut bounds = [(0usize, 0usize); MAX_ARGUMENTS];
    let mut count = 0;
    let mut length = 0;
    let mut quote: Option<char> = None;
    let mut in_word = false;
    let mut word_start = 0;
    for character in line.chars() {
        match (quote, character) {
            (Some(open), c) if c == open => quote = None,
            (None, '"' | '\'') => {
                quote = Some(character);
                if !in_word {
                    in_word = true;
                    word_start = length;
                }
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    if count == MAX_ARGUMENTS {
                        return Err(SplitError::TooManyArguments);
                    }
                    bounds[count] = (word_start, length);
                    count += 1;
                    in_word = false;
                }
            }
            (_, c) => {
                if !in_word {
                    in_word = true;
                    word_start = length;
                }
                let mut encoded = [0u8; 4];
                let bytes = c.encode_utf8(&mut encoded).as_bytes();
                if length + bytes.len() > scratch.len() {
                    return Err(SplitError::TooLong);
                }
                scratch[length..length + bytes.len()].copy_from_slice(bytes);
                length += bytes.len();
            }
        }
    }
    if quote.is_some() {
        return Err(SplitError::UnterminatedQuote);
    }
    if in_word {
        if count == MAX_ARGUMENTS {
            return Err(SplitError::TooManyArguments);
        }
        bounds[count] = (word_start, length);
        count += 1;
    }
    let text: &'a str = core::str::from_utf8(&scratch[..length]).map_err(|_| SplitError::TooLong)?;
    for (slot, &(start, end)) in storage.iter_mut().zip(bounds[..count].iter()) {
        *slot = &text[start..end];
    }
    Ok(&storage[..count])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> Result<Vec<String>, SplitError> {
        let mut storage = [""; MAX_ARGUMENTS];
        let mut scratch = [0u8; 256];
        split_arguments(line, &mut storage, &mut scratch).map(|args| args.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn splits_on_whitespace() {
        assert_eq!(split("  echo  a b\tc ").unwrap(), ["echo", "a", "b", "c"]);
        assert!(split("   ").unwrap().is_empty());
    }

    #[test]
    fn quotes_group_and_disappear() {
        assert_eq!(split("echo \"a b\" 'c  d' e\"f g\"").unwrap(), ["echo", "a b", "c  d", "ef g"]);
        assert_eq!(split("echo \"it's\"").unwrap(), ["echo", "it's"]);
        assert_eq!(split("echo ''").unwrap(), ["echo", ""]);
    }

    #[test]
    fn reports_errors() {
        assert_eq!(split("echo \"open"), Err(SplitError::UnterminatedQuote));
        assert_eq!(split(&"a ".repeat(40)), Err(SplitError::TooManyArguments));
        assert_eq!(split(&"x".repeat(300)), Err(SplitError::TooLong));
    }
}
