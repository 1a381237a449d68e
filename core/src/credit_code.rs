//! The unified social credit code (统一社会信用代码, GB 32100-2015): 18 characters from
//! `0123456789ABCDEFGHJKLMNPQRTUWXY`, the last one a check character.
//!
//! Pure functions only; the validation layer turns the [`CreditCodeError`] into a
//! field-named, bilingual error.

const ALPHABET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";
const WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];

/// Why a credit code was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreditCodeError {
    /// Not 18 characters long (the count is in characters, not bytes).
    Length(usize),
    /// A character outside the GB 32100 alphabet, at a 1-based position.
    Character { position: usize, found: char },
    /// The 18th character does not match the one computed from the first 17.
    CheckCharacter { expected: char, found: char },
}

fn value_of(c: char) -> Option<u32> {
    ALPHABET.find(c).map(|i| i as u32)
}

/// The check character for the first 17 characters, or `None` when one of them is not in
/// the alphabet.
pub fn check_character(first17: &str) -> Option<char> {
    let mut sum = 0u32;
    let mut count = 0;
    for (c, w) in first17.chars().zip(WEIGHTS) {
        sum += value_of(c)? * w;
        count += 1;
    }
    if count != 17 || first17.chars().count() != 17 {
        return None;
    }
    let check = (31 - sum % 31) % 31;
    ALPHABET.chars().nth(check as usize)
}

/// Validates a code as typed (surrounding whitespace and lower case are the caller's to
/// normalise with [`normalise`]).
pub fn validate(code: &str) -> Result<(), CreditCodeError> {
    let chars: Vec<char> = code.chars().collect();
    if chars.len() != 18 {
        return Err(CreditCodeError::Length(chars.len()));
    }
    for (i, &c) in chars.iter().enumerate() {
        if value_of(c).is_none() {
            return Err(CreditCodeError::Character { position: i + 1, found: c });
        }
    }
    let first17: String = chars[..17].iter().collect();
    let expected = check_character(&first17).expect("alphabet already checked");
    if chars[17] != expected {
        return Err(CreditCodeError::CheckCharacter { expected, found: chars[17] });
    }
    Ok(())
}

/// Trims and upper-cases a code as an inspector may type it with cold hands.
pub fn normalise(code: &str) -> String {
    code.trim().to_uppercase()
}

/// Characters 3–8: the administrative division code of the registering authority.
pub fn division_code(code: &str) -> Option<&str> {
    code.get(2..8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_domain_example() {
        assert_eq!(validate("91350100M000100Y43"), Ok(()));
        assert_eq!(check_character("91350100M000100Y4"), Some('3'));
        assert_eq!(division_code("91350100M000100Y43"), Some("350100"));
    }

    #[test]
    fn refuses_wrong_check_character() {
        assert_eq!(validate("91350100M000100Y44"), Err(CreditCodeError::CheckCharacter { expected: '3', found: '4' }));
    }

    #[test]
    fn refuses_letters_outside_the_alphabet() {
        // I, O, S, V and Z are not used by GB 32100.
        assert_eq!(validate("91350100I000100Y43"), Err(CreditCodeError::Character { position: 9, found: 'I' }));
    }

    #[test]
    fn refuses_wrong_length_counted_in_characters() {
        assert_eq!(validate("9135"), Err(CreditCodeError::Length(4)));
        assert_eq!(validate("统一社会信用代码"), Err(CreditCodeError::Length(8)));
    }

    #[test]
    fn normalises_typing() {
        assert_eq!(normalise(" 91350100m000100y43 "), "91350100M000100Y43");
    }
}
