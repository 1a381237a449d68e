//! The store's keys and the encryption of attachment files.
//!
//! The app hands the store one 32-byte key, kept in the Android Keystore or the iOS Keychain
//! (`bindings/README.md`). SQLCipher encrypts the database with it as is; two subkeys are
//! derived from it with HKDF-SHA256, one for the contents of attachment files, one for their
//! names, so that no file's name is the SHA-256 of its photo (which would tell whoever holds a
//! copy of the photo that this phone has it).
//!
//! An attachment file is `MAGIC`, a random 19-byte nonce prefix, then the plaintext in
//! 64 KiB segments, each sealed with XChaCha20-Poly1305 as a STREAM (RustCrypto's
//! `aead::stream`, 32-bit big-endian counter and a last-segment flag), the content address
//! (the SHA-256 of the plaintext, which stays the attachment's id) as associated data. A
//! segment decrypts on its own, so uploads read any range without decrypting the whole file;
//! a truncated, reordered or swapped file fails to decrypt.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use chacha20poly1305::aead::stream::{NewStream, StreamBE32, StreamPrimitive};
use chacha20poly1305::aead::{KeyInit, Payload};
use chacha20poly1305::XChaCha20Poly1305;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Reason, Result, ValidationError};

/// The key of a store: 32 random bytes from the platform keystore. Wiped from memory on drop;
/// its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct StoreKey(Zeroizing<[u8; 32]>);

impl StoreKey {
    pub const LEN: usize = 32;

    pub fn new(bytes: [u8; 32]) -> StoreKey {
        StoreKey(Zeroizing::new(bytes))
    }

    /// A key from the bytes the app kept; anything but 32 bytes is refused (field `key`).
    pub fn from_slice(bytes: &[u8]) -> Result<StoreKey> {
        let array: [u8; 32] = bytes.try_into().map_err(|_| {
            ValidationError::new("key", Reason::Malformed(format!("must be 32 bytes, not {}", bytes.len())))
        })?;
        Ok(StoreKey::new(array))
    }

    /// A fresh random key (from the operating system's generator), for an app that lets the
    /// core make the key it then keeps in the keystore, and for tests.
    pub fn generate() -> StoreKey {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let key = StoreKey::new(bytes);
        bytes.zeroize();
        key
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn derive(&self, info: &[u8]) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<Sha256>::new(Some(b"ohassist store key"), self.as_bytes())
            .expand(info, out.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 length");
        out
    }
}

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreKey(…)")
    }
}

const MAGIC: &[u8; 8] = b"OHAENC01";
const PREFIX: usize = 19;
const HEADER: usize = MAGIC.len() + PREFIX;
const SEGMENT: usize = 64 * 1024;
const TAG: usize = 16;

/// The subkeys of attachment files, derived from the store key.
pub(crate) struct AttachmentCipher {
    content: Zeroizing<[u8; 32]>,
    names: Zeroizing<[u8; 32]>,
}

impl AttachmentCipher {
    pub(crate) fn new(key: &StoreKey) -> AttachmentCipher {
        AttachmentCipher {
            content: key.derive(b"ohassist attachment contents v1"),
            names: key.derive(b"ohassist attachment names v1"),
        }
    }

    /// The file name of attachment `sha256`: a keyed hash of it, 64 hex characters.
    pub(crate) fn file_name(&self, sha256: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.names.as_ref()).expect("any key length");
        mac.update(sha256.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    fn stream(&self, prefix: &[u8]) -> StreamBE32<XChaCha20Poly1305> {
        let aead = XChaCha20Poly1305::new(self.content.as_ref().into());
        StreamBE32::from_aead(aead, prefix.into())
    }

    /// The file contents for `plaintext`, whose SHA-256 is `sha256`.
    pub(crate) fn seal(&self, sha256: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut prefix = [0u8; PREFIX];
        rand::rng().fill_bytes(&mut prefix);
        let stream = self.stream(&prefix);
        let segments = plaintext.len().div_ceil(SEGMENT).max(1);
        let mut out = Vec::with_capacity(HEADER + plaintext.len() + segments * TAG);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&prefix);
        for i in 0..segments {
            let chunk = &plaintext[(i * SEGMENT).min(plaintext.len())..((i + 1) * SEGMENT).min(plaintext.len())];
            let sealed = stream
                .encrypt(i as u32, i + 1 == segments, Payload { msg: chunk, aad: sha256.as_bytes() })
                .expect("a segment below the cipher's limit encrypts");
            out.extend_from_slice(&sealed);
        }
        out
    }

    /// The whole plaintext of the file at `path`.
    pub(crate) fn open_file(&self, sha256: &str, path: &Path) -> Result<Vec<u8>> {
        let mut file = std::fs::File::open(path)?;
        let len = plaintext_len(file.metadata()?.len()).ok_or_else(|| damaged(sha256))?;
        self.read_range(sha256, &mut file, 0, len)
    }

    /// `len` plaintext bytes from `offset` of the file at `path`, decrypting only the
    /// segments that hold them.
    pub(crate) fn open_range(&self, sha256: &str, path: &Path, offset: u64, len: u64) -> Result<Vec<u8>> {
        let mut file = std::fs::File::open(path)?;
        self.read_range(sha256, &mut file, offset, len)
    }

    fn read_range(&self, sha256: &str, file: &mut std::fs::File, offset: u64, len: u64) -> Result<Vec<u8>> {
        let file_len = file.metadata()?.len();
        let total = plaintext_len(file_len).ok_or_else(|| damaged(sha256))?;
        if offset.checked_add(len).is_none_or(|end| end > total) {
            return Err(Error::CorruptDocument {
                id: format!("attachment {sha256}"),
                reason: format!("range {offset}+{len} lies beyond its {total} bytes"),
            });
        }
        let mut header = [0u8; HEADER];
        file.seek(SeekFrom::Start(0))?;
        file.read_exact(&mut header)?;
        if &header[..MAGIC.len()] != MAGIC {
            return Err(damaged(sha256));
        }
        let stream = self.stream(&header[MAGIC.len()..]);
        let segments = total.div_ceil(SEGMENT as u64).max(1);
        let mut out = Vec::with_capacity(len as usize);
        if len == 0 {
            return Ok(out);
        }
        let (first, last) = (offset / SEGMENT as u64, (offset + len - 1) / SEGMENT as u64);
        for i in first..=last {
            let plain_len = (total - i * SEGMENT as u64).min(SEGMENT as u64) as usize;
            let mut sealed = vec![0u8; plain_len + TAG];
            file.seek(SeekFrom::Start(HEADER as u64 + i * (SEGMENT + TAG) as u64))?;
            file.read_exact(&mut sealed)?;
            let plain = stream
                .decrypt(i as u32, i + 1 == segments, Payload { msg: &sealed, aad: sha256.as_bytes() })
                .map_err(|_| damaged(sha256))?;
            let start = if i == first { (offset - i * SEGMENT as u64) as usize } else { 0 };
            let end = if i == last { (offset + len - i * SEGMENT as u64) as usize } else { plain.len() };
            out.extend_from_slice(&plain[start..end]);
        }
        Ok(out)
    }
}

/// Whether a file starts as an encrypted attachment does.
pub(crate) fn is_sealed(path: &Path) -> Result<bool> {
    let mut magic = [0u8; MAGIC.len()];
    let mut f = std::fs::File::open(path)?;
    Ok(f.read_exact(&mut magic).is_ok() && &magic == MAGIC)
}

/// The plaintext length of an encrypted file of `file_len` bytes, if that length is possible.
fn plaintext_len(file_len: u64) -> Option<u64> {
    let body = file_len.checked_sub(HEADER as u64)?;
    let full = body / (SEGMENT + TAG) as u64;
    let rest = body % (SEGMENT + TAG) as u64;
    match rest {
        0 if full > 0 => Some(full * SEGMENT as u64),
        r if r >= TAG as u64 => Some(full * SEGMENT as u64 + r - TAG as u64),
        _ => None,
    }
}

fn damaged(sha256: &str) -> Error {
    Error::CorruptDocument {
        id: format!("attachment {sha256}"),
        reason: "the file does not decrypt with this store's key (damaged or from another store)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join("f");
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn seals_and_reads_back_any_range_of_any_length() {
        let dir = tempfile::tempdir().unwrap();
        let cipher = AttachmentCipher::new(&StoreKey::generate());
        for len in [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT + 17] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let sha = crate::store::sha256_hex(&plain);
            let path = write(dir.path(), &cipher.seal(&sha, &plain));
            assert_eq!(cipher.open_file(&sha, &path).unwrap(), plain, "len {len}");
            if len > 10 {
                let (off, n) = (len as u64 / 3, len as u64 / 2);
                assert_eq!(
                    cipher.open_range(&sha, &path, off, n).unwrap(),
                    &plain[off as usize..(off + n) as usize],
                    "range of len {len}"
                );
            }
            assert!(cipher.open_range(&sha, &path, len as u64, 1).is_err());
            // A range from the app that overflows is refused, not a panic or an allocation.
            assert!(cipher.open_range(&sha, &path, u64::MAX, 2).is_err());
            assert!(cipher.open_range(&sha, &path, 1, u64::MAX).is_err());
        }
    }

    #[test]
    fn a_wrong_key_a_swapped_address_or_a_cut_file_fails() {
        let dir = tempfile::tempdir().unwrap();
        let cipher = AttachmentCipher::new(&StoreKey::generate());
        let plain = vec![42u8; 2 * SEGMENT + 5];
        let sha = crate::store::sha256_hex(&plain);
        let sealed = cipher.seal(&sha, &plain);
        assert!(!sealed.windows(64).any(|w| w == &plain[..64]), "no plaintext in the file");
        let path = write(dir.path(), &sealed);
        let other = AttachmentCipher::new(&StoreKey::generate());
        assert!(matches!(other.open_file(&sha, &path), Err(Error::CorruptDocument { .. })));
        assert!(cipher.open_file(&"0".repeat(64), &path).is_err());
        let cut = write(dir.path(), &sealed[..HEADER + SEGMENT + TAG]);
        assert!(cipher.open_file(&sha, &cut).is_err(), "a file cut at a segment boundary");
        assert_ne!(cipher.file_name(&sha), sha);
        assert_eq!(cipher.file_name(&sha), cipher.file_name(&sha));
    }

    #[test]
    fn a_key_must_be_32_bytes_and_does_not_show() {
        assert!(StoreKey::from_slice(&[1; 31]).is_err());
        let key = StoreKey::from_slice(&[0xab; 32]).unwrap();
        assert!(!format!("{key:?}").contains("ab"));
    }
}
