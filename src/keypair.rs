//! The node's noise static keypair: generate, save, load; its public key is the [`PeerId`].
//!
//! A node's identity is an X25519 keypair, the static key of its
//! `Noise_XX_25519_ChaChaPoly_BLAKE2s` handshakes. The 32-byte public key *is* the
//! node's [`PeerId`], so a peer id cannot be claimed without the matching secret.
//!
//! # Key file format
//!
//! [`Keypair::save`] writes, and [`Keypair::load`] reads, UTF-8 text of exactly three
//! lines:
//!
//! ```text
//! p2p-noise-key-v1
//! secret <64 lowercase hex digits>
//! public <64 lowercase hex digits>
//! ```
//!
//! * line 1 is the literal header `p2p-noise-key-v1` (the version of this format);
//! * line 2 is `secret`, one space, then the 32-byte X25519 secret key in hex;
//! * line 3 is `public`, one space, then the 32-byte public key (the peer id) in hex.
//!
//! The `public` line is redundant, it lets a human read the peer id, and `load` checks
//! that it matches the public key derived from the secret. Lines end in `\n` (written)
//! or `\r\n` (accepted), the final newline is optional, and hex digits may be in either
//! case on load. Anything else (another header, a missing or extra line, a blank line,
//! stray spaces, a wrong-length or non-hex key) is rejected with
//! [`KeyError::Malformed`], whose reason names the problem and never quotes the secret.
//!
//! On unix the file is created with mode `0600`; `load` logs a warning (and still
//! loads) when the file is readable or writable by group or others.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::peer::{PeerId, hex, nibble};
use crate::secure::NOISE_PARAMS;

/// Line 1 of a key file.
const HEADER: &str = "p2p-noise-key-v1";

/// A key file is 161 bytes (164 with CRLF); anything much longer is not one, and is
/// not read into memory whole.
const MAX_FILE_LEN: u64 = 1024;

/// The node's X25519 noise static keypair; its public key is the node's [`PeerId`].
///
/// This is the static key of the node's `Noise_XX_25519_ChaChaPoly_BLAKE2s`
/// handshakes, so a peer id cannot be claimed without the matching secret. `Debug`
/// prints only the peer id, never the secret.
///
/// # Key file format
///
/// [`save`](Keypair::save) writes, and [`load`](Keypair::load) reads, UTF-8 text of
/// exactly three lines:
///
/// ```text
/// p2p-noise-key-v1
/// secret <64 lowercase hex digits>
/// public <64 lowercase hex digits>
/// ```
///
/// * line 1 is the literal header `p2p-noise-key-v1` (the version of this format);
/// * line 2 is `secret`, one space, then the 32-byte X25519 secret key in hex;
/// * line 3 is `public`, one space, then the 32-byte public key (the peer id) in hex.
///
/// The `public` line is redundant, it lets a human read the peer id, and `load` checks
/// that it matches the public key derived from the secret. Lines end in `\n` (written)
/// or `\r\n` (accepted), the final newline is optional, and hex digits may be in either
/// case on load. Anything else (another header, a missing or extra line, a blank line,
/// stray spaces, a wrong-length or non-hex key) is rejected with
/// [`KeyError::Malformed`], whose reason names the problem and never quotes the secret.
///
/// On unix the file is created with mode `0600`; `load` logs a warning (and still
/// loads) when the file is readable or writable by group or others.
#[derive(Clone)]
pub struct Keypair {
    secret: [u8; 32],
    id: PeerId,
}

/// Why a keypair could not be generated, derived, saved or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Reading or writing the key file failed.
    #[error("key file {}: {source}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// What the operating system reported.
        #[source]
        source: io::Error,
    },
    /// The key file is not in the format described on [`Keypair`].
    #[error("malformed key file {}: {reason}", path.display())]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A fresh keypair could not be generated (no randomness available).
    #[error("could not generate a noise keypair: {0}")]
    Random(#[source] snow::Error),
    /// The crypto backend offers no Curve25519, so no public key can be derived.
    #[error("the noise crypto backend has no Curve25519 implementation")]
    NoCurve25519,
}

impl Keypair {
    /// A fresh random X25519 keypair, from the operating system's random source.
    pub fn generate() -> Result<Keypair, KeyError> {
        let params = NOISE_PARAMS.parse().map_err(KeyError::Random)?;
        let pair = snow::Builder::new(params)
            .generate_keypair()
            .map_err(KeyError::Random)?;
        let secret: [u8; 32] = pair
            .private
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::NoCurve25519)?;
        let keypair = Keypair::from_secret(secret)?;
        // snow derived the same public key; a mismatch would mean two X25519s disagree.
        debug_assert_eq!(keypair.id.as_bytes().as_slice(), pair.public.as_slice());
        Ok(keypair)
    }

    /// The keypair with this X25519 secret key; the public key is derived from it
    /// (X25519 with the base point, clamping the secret as RFC 7748 specifies).
    pub fn from_secret(secret: [u8; 32]) -> Result<Keypair, KeyError> {
        Ok(Keypair {
            secret,
            id: PeerId::from_bytes(crate::resolver::public_key(&secret)),
        })
    }

    /// This node's peer id: the static public key.
    pub fn peer_id(&self) -> PeerId {
        self.id
    }

    /// The X25519 secret key, as the noise handshake needs it.
    ///
    /// **Sensitive**: whoever has these bytes can act as this peer. Do not log them,
    /// and keep any copy only as long as needed.
    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// Writes the keypair to `path` in the [documented format](Keypair#key-file-format), replacing any
    /// existing file:
    ///
    /// ```text
    /// p2p-noise-key-v1
    /// secret <64 lowercase hex digits>
    /// public <64 lowercase hex digits>
    /// ```
    ///
    /// each line ending in `\n`. The text goes to a temporary file in the same directory
    /// (created with mode `0600` on unix), is flushed to disk, and is then renamed over
    /// `path`, so a crash leaves either the old file or the whole new one, never half a
    /// key.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        write_atomically(path, self.file_text().as_bytes(), Replace::Yes).map(|_| ())
    }

    /// Reads a keypair written by [`save`](Self::save).
    ///
    /// Fails with [`KeyError::Io`] if the file cannot be read, and with
    /// [`KeyError::Malformed`] if it is not in the
    /// [documented format](Keypair#key-file-format) or its
    /// `public` line does not match the secret. On unix, logs a warning if the file is
    /// accessible to group or others.
    pub fn load(path: &Path) -> Result<Keypair, KeyError> {
        let io_err = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = file.metadata().map_err(io_err)?.permissions().mode();
            if mode & 0o077 != 0 {
                log::warn!(
                    "key file {} has mode {:03o}, readable by others than its owner; \
                     consider `chmod 600` on it",
                    path.display(),
                    mode & 0o777
                );
            }
        }
        let mut bytes = Vec::new();
        file.take(MAX_FILE_LEN + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err)?;
        parse(&bytes).map_err(|reason| KeyError::Malformed {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Loads the keypair at `path`, or, if there is no file there, generates one and
    /// saves it (mode `0600` on unix) for next time.
    ///
    /// Any other problem with an existing file (unreadable, malformed) is an error; the
    /// file is never overwritten. If another process creates the file at the same
    /// time, both end up with the key that is on disk.
    pub fn load_or_generate(path: &Path) -> Result<Keypair, KeyError> {
        match Keypair::load(path) {
            Err(KeyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            result => return result,
        }
        let keypair = Keypair::generate()?;
        match write_atomically(path, keypair.file_text().as_bytes(), Replace::No)? {
            Written::Yes => {
                log::info!(
                    "created key file {} for peer {}",
                    path.display(),
                    keypair.id
                );
                Ok(keypair)
            }
            // Someone else created it first: theirs is the identity on disk.
            Written::AlreadyExists => Keypair::load(path),
        }
    }

    /// The key file's text, in the documented format.
    fn file_text(&self) -> String {
        format!(
            "{HEADER}\nsecret {}\npublic {}\n",
            hex(&self.secret),
            self.id
        )
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keypair")
            .field("peer_id", &format_args!("{}", self.id))
            .finish_non_exhaustive()
    }
}

/// Parses a key file's bytes; the error is the reason for [`KeyError::Malformed`].
fn parse(bytes: &[u8]) -> Result<Keypair, String> {
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(format!(
            "file is longer than {MAX_FILE_LEN} bytes; a key file is 3 short lines"
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.valid_up_to()
        )
    })?;
    if text.is_empty() {
        return Err(format!("file is empty; expected header '{HEADER}'"));
    }
    // One final line ending is optional; after removing it, every line must be there.
    let body = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    let lines: Vec<&str> = body
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .collect();

    let header = lines[0];
    if header != HEADER {
        return Err(
            if header.starts_with("p2p-noise-key-v") && header.len() <= 32 {
                format!("unsupported version {header:?}; expected header '{HEADER}'")
            } else {
                // Do not quote the line: it might be a misplaced secret.
                format!("expected header '{HEADER}' on line 1")
            },
        );
    }
    if lines.len() != 3 {
        return Err(format!(
            "expected 3 lines (header, secret, public), found {}",
            lines.len()
        ));
    }
    let secret = parse_field(lines[1], 2, "secret")?;
    let public = parse_field(lines[2], 3, "public")?;
    let keypair = Keypair::from_secret(secret).map_err(|e| e.to_string())?;
    if keypair.id.as_bytes() != &public {
        return Err(format!(
            "public key in file does not match the secret (the secret's public key is {})",
            keypair.id
        ));
    }
    Ok(keypair)
}

/// Parses line `number`, `<name> <64 hex digits>`. Never quotes the line's value.
fn parse_field(line: &str, number: usize, name: &str) -> Result<[u8; 32], String> {
    let value = line
        .strip_prefix(name)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or_else(|| format!("line {number} must be '{name} <64 hex digits>'"))?;
    let len = value.chars().count();
    if len != 64 {
        return Err(format!(
            "{name} is not 64 hex digits: found {len} characters on line {number}"
        ));
    }
    let mut out = [0u8; 32];
    let digits = value.as_bytes();
    for (i, byte) in out.iter_mut().enumerate() {
        let hi = nibble(digits[2 * i]).ok();
        let lo = nibble(digits[2 * i + 1]).ok();
        match (hi, lo) {
            (Some(hi), Some(lo)) => *byte = hi << 4 | lo,
            _ => {
                let at = if hi.is_none() { 2 * i } else { 2 * i + 1 };
                return Err(format!(
                    "{name} is not 64 hex digits: character {} on line {number} is not a hex digit",
                    at + 1
                ));
            }
        }
    }
    Ok(out)
}

/// Whether [`write_atomically`] may replace an existing file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Replace {
    Yes,
    No,
}

/// What [`write_atomically`] did.
enum Written {
    Yes,
    /// `Replace::No` and a file was already there; it was left alone.
    AlreadyExists,
}

/// Writes `contents` to a fresh `0600` temporary file next to `path`, syncs it, and
/// moves it to `path`: by rename (replacing), or by hard link (not replacing, so two
/// processes creating the same key file cannot overwrite each other's).
fn write_atomically(path: &Path, contents: &[u8], replace: Replace) -> Result<Written, KeyError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let io_err = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let context = |e: io::Error, what: &str, tmp: &Path| {
        io_err(io::Error::new(
            e.kind(),
            format!("{what} {}: {e}", tmp.display()),
        ))
    };

    let name = path.file_name().ok_or_else(|| {
        io_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "path does not name a file",
        ))
    })?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(tmp_name);

    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&tmp)
        .map_err(|e| context(e, "creating temporary file", &tmp))?;
    let written = file
        .write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| context(e, "writing temporary file", &tmp));
    drop(file);
    let moved = written.and_then(|()| match replace {
        Replace::Yes => fs::rename(&tmp, path)
            .map(|()| Written::Yes)
            .map_err(|e| context(e, "renaming into place from", &tmp)),
        Replace::No => match fs::hard_link(&tmp, path) {
            Ok(()) => Ok(Written::Yes),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Written::AlreadyExists),
            // No hard links on this filesystem: fall back to a rename, which only
            // loses a race with another process creating the file at the same moment.
            Err(_) => fs::rename(&tmp, path)
                .map(|()| Written::Yes)
                .map_err(|e| context(e, "renaming into place from", &tmp)),
        },
    });
    // After a rename there is nothing left; otherwise remove the temporary file.
    let _ = fs::remove_file(&tmp);
    let written = moved?;
    // Make the new directory entry durable too; a failure here is not worth failing for.
    #[cfg(unix)]
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7748 §6.1: Alice's and Bob's X25519 keys.
    const ALICE_SECRET: &str = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
    const ALICE_PUBLIC: &str = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
    const BOB_SECRET: &str = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb";
    const BOB_PUBLIC: &str = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";

    fn bytes32(text: &str) -> [u8; 32] {
        *text.parse::<PeerId>().unwrap().as_bytes()
    }

    fn alice() -> Keypair {
        Keypair::from_secret(bytes32(ALICE_SECRET)).unwrap()
    }

    fn alice_text() -> String {
        format!("p2p-noise-key-v1\nsecret {ALICE_SECRET}\npublic {ALICE_PUBLIC}\n")
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("p2p-keypair-test-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn path(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }

        fn entries(&self) -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Writes `text` to a file and loads it, expecting `Malformed` naming that file.
    fn malformed(text: impl AsRef<[u8]>) -> String {
        let dir = TempDir::new();
        let path = dir.path("key");
        fs::write(&path, text).unwrap();
        match Keypair::load(&path) {
            Err(KeyError::Malformed { path: p, reason }) => {
                assert_eq!(p, path);
                reason
            }
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    fn loads(text: &str) -> Keypair {
        let dir = TempDir::new();
        let path = dir.path("key");
        fs::write(&path, text).unwrap();
        Keypair::load(&path).unwrap()
    }

    #[test]
    fn rfc7748_vectors() {
        let a = alice();
        assert_eq!(a.peer_id().to_string(), ALICE_PUBLIC);
        assert_eq!(a.secret(), &bytes32(ALICE_SECRET));
        let b = Keypair::from_secret(bytes32(BOB_SECRET)).unwrap();
        assert_eq!(b.peer_id().to_string(), BOB_PUBLIC);
    }

    #[test]
    fn generated_keys_are_consistent_and_distinct() {
        let a = Keypair::generate().unwrap();
        let b = Keypair::generate().unwrap();
        assert_ne!(a.secret(), b.secret());
        assert_ne!(a.peer_id(), b.peer_id());
        // The peer id is the public key of the secret.
        assert_eq!(
            Keypair::from_secret(*a.secret()).unwrap().peer_id(),
            a.peer_id()
        );
    }

    #[test]
    fn generate_save_load_roundtrip() {
        let dir = TempDir::new();
        let path = dir.path("node.key");
        let key = Keypair::generate().unwrap();
        key.save(&path).unwrap();
        let loaded = Keypair::load(&path).unwrap();
        assert_eq!(loaded.secret(), key.secret());
        assert_eq!(loaded.peer_id(), key.peer_id());
        // No temporary file is left behind.
        assert_eq!(dir.entries(), vec!["node.key".to_string()]);
    }

    #[test]
    fn saved_file_is_the_documented_text() {
        let dir = TempDir::new();
        let path = dir.path("key");
        alice().save(&path).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), alice_text());
    }

    #[cfg(unix)]
    #[test]
    fn saved_file_has_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new();
        let path = dir.path("key");
        alice().save(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[cfg(unix)]
    #[test]
    fn save_replaces_a_world_readable_file_with_a_0600_one() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new();
        let path = dir.path("key");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        alice().save(&path).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), alice_text());
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(dir.entries(), vec!["key".to_string()]);
    }

    #[cfg(unix)]
    #[test]
    fn permissive_file_still_loads() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new();
        let path = dir.path("key");
        fs::write(&path, alice_text()).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(Keypair::load(&path).unwrap().peer_id(), alice().peer_id());
    }

    #[test]
    fn save_into_missing_directory_names_the_path() {
        let dir = TempDir::new();
        let path = dir.path("missing").join("key");
        match alice().save(&path) {
            Err(KeyError::Io { path: p, source }) => {
                assert_eq!(p, path);
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("expected Io, got {other:?}"),
        }
    }

    #[test]
    fn load_missing_file_is_io_error_with_path() {
        let dir = TempDir::new();
        let path = dir.path("nope");
        let err = Keypair::load(&path).unwrap_err();
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
        match err {
            KeyError::Io { path: p, source } => {
                assert_eq!(p, path);
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("expected Io, got {other:?}"),
        }
    }

    #[test]
    fn accepts_crlf_and_missing_final_newline_and_uppercase() {
        let want = alice().peer_id();
        assert_eq!(loads(&alice_text()).peer_id(), want);
        assert_eq!(loads(alice_text().trim_end()).peer_id(), want);
        assert_eq!(loads(&alice_text().replace('\n', "\r\n")).peer_id(), want);
        let crlf_no_final = alice_text().replace('\n', "\r\n");
        assert_eq!(loads(crlf_no_final.trim_end()).peer_id(), want);
        let upper = format!(
            "p2p-noise-key-v1\nsecret {}\npublic {}\n",
            ALICE_SECRET.to_uppercase(),
            ALICE_PUBLIC.to_uppercase()
        );
        assert_eq!(loads(&upper).peer_id(), want);
    }

    #[test]
    fn rejects_wrong_header() {
        let text = alice_text().replace("p2p-noise-key-v1", "p2p-key");
        let reason = malformed(text);
        assert!(
            reason.contains("expected header 'p2p-noise-key-v1'"),
            "{reason}"
        );
        let text = alice_text().replace("p2p-noise-key-v1", "p2p-noise-key-v2");
        let reason = malformed(text);
        assert!(
            reason.contains("unsupported version \"p2p-noise-key-v2\""),
            "{reason}"
        );
        let reason = malformed("");
        assert!(reason.contains("empty"), "{reason}");
        // A UTF-8 byte order mark is not the header either.
        let reason = malformed(format!("\u{feff}{}", alice_text()));
        assert!(reason.contains("expected header"), "{reason}");
    }

    #[test]
    fn rejects_bad_hex_without_quoting_the_secret() {
        let bad = format!("{}g{}", &ALICE_SECRET[..10], &ALICE_SECRET[11..]);
        let reason = malformed(alice_text().replace(ALICE_SECRET, &bad));
        assert!(reason.contains("secret is not 64 hex digits"), "{reason}");
        assert!(reason.contains("character 11 on line 2"), "{reason}");
        assert!(!reason.contains(&ALICE_SECRET[..10]), "{reason}");
        let bad = format!("{}z", &ALICE_PUBLIC[..63]);
        let reason = malformed(alice_text().replace(ALICE_PUBLIC, &bad));
        assert!(reason.contains("public is not 64 hex digits"), "{reason}");
        assert!(reason.contains("character 64 on line 3"), "{reason}");
        // Non-ASCII is counted in characters, not bytes, and still rejected.
        let bad = format!("{}é", &ALICE_SECRET[..63]);
        let reason = malformed(alice_text().replace(ALICE_SECRET, &bad));
        assert!(reason.contains("character 64 on line 2"), "{reason}");
    }

    #[test]
    fn rejects_wrong_length() {
        let reason = malformed(alice_text().replace(ALICE_SECRET, &ALICE_SECRET[..62]));
        assert!(
            reason.contains("secret is not 64 hex digits: found 62 characters"),
            "{reason}"
        );
        let reason = malformed(alice_text().replace(ALICE_PUBLIC, &format!("{ALICE_PUBLIC}00")));
        assert!(
            reason.contains("public is not 64 hex digits: found 66 characters"),
            "{reason}"
        );
        let reason = malformed(alice_text().replace(ALICE_SECRET, &format!("{ALICE_SECRET} ")));
        assert!(reason.contains("found 65 characters"), "{reason}");
    }

    #[test]
    fn rejects_wrong_field_names() {
        let reason = malformed(alice_text().replace("secret ", "private "));
        assert!(
            reason.contains("line 2 must be 'secret <64 hex digits>'"),
            "{reason}"
        );
        let reason = malformed(alice_text().replace("public ", "public\t"));
        assert!(
            reason.contains("line 3 must be 'public <64 hex digits>'"),
            "{reason}"
        );
        // Lines swapped.
        let swapped = format!("p2p-noise-key-v1\npublic {ALICE_PUBLIC}\nsecret {ALICE_SECRET}\n");
        let reason = malformed(swapped);
        assert!(reason.contains("line 2 must be 'secret"), "{reason}");
    }

    #[test]
    fn rejects_public_mismatch() {
        let reason = malformed(alice_text().replace(ALICE_PUBLIC, BOB_PUBLIC));
        assert!(
            reason.contains("public key in file does not match the secret"),
            "{reason}"
        );
        assert!(reason.contains(ALICE_PUBLIC), "{reason}");
    }

    #[test]
    fn rejects_extra_and_missing_lines() {
        let reason = malformed(format!("{}extra\n", alice_text()));
        assert!(reason.contains("expected 3 lines"), "{reason}");
        assert!(reason.contains("found 4"), "{reason}");
        // Only one final newline is allowed.
        let reason = malformed(format!("{}\n", alice_text()));
        assert!(reason.contains("found 4"), "{reason}");
        let reason = malformed(format!("p2p-noise-key-v1\nsecret {ALICE_SECRET}\n"));
        assert!(reason.contains("expected 3 lines"), "{reason}");
        assert!(reason.contains("found 2"), "{reason}");
        let reason = malformed("p2p-noise-key-v1\n");
        assert!(reason.contains("found 1"), "{reason}");
    }

    #[test]
    fn rejects_non_utf8_and_oversized_files() {
        let mut bytes = alice_text().into_bytes();
        bytes[20] = 0xff;
        let reason = malformed(bytes);
        assert!(reason.contains("not UTF-8"), "{reason}");
        let reason = malformed(vec![b'a'; 5000]);
        assert!(reason.contains("longer than 1024 bytes"), "{reason}");
    }

    #[test]
    fn malformed_error_names_path_and_reason() {
        let dir = TempDir::new();
        let path = dir.path("key");
        fs::write(&path, "hello\n").unwrap();
        let message = Keypair::load(&path).unwrap_err().to_string();
        assert!(message.contains(&*path.to_string_lossy()), "{message}");
        assert!(message.contains("expected header"), "{message}");
    }

    #[test]
    fn load_or_generate_creates_then_reuses() {
        let dir = TempDir::new();
        let path = dir.path("node.key");
        let first = Keypair::load_or_generate(&path).unwrap();
        assert!(path.exists());
        assert_eq!(dir.entries(), vec!["node.key".to_string()]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let second = Keypair::load_or_generate(&path).unwrap();
        assert_eq!(second.secret(), first.secret());
        assert_eq!(second.peer_id(), first.peer_id());
        assert_eq!(Keypair::load(&path).unwrap().peer_id(), first.peer_id());
    }

    #[test]
    fn load_or_generate_keeps_an_existing_key_and_refuses_a_bad_one() {
        let dir = TempDir::new();
        let path = dir.path("key");
        alice().save(&path).unwrap();
        assert_eq!(
            Keypair::load_or_generate(&path).unwrap().peer_id(),
            alice().peer_id()
        );
        fs::write(&path, "garbage").unwrap();
        assert!(matches!(
            Keypair::load_or_generate(&path),
            Err(KeyError::Malformed { .. })
        ));
        // The bad file is not overwritten.
        assert_eq!(fs::read_to_string(&path).unwrap(), "garbage");
    }

    #[test]
    fn debug_shows_peer_id_not_secret() {
        let key = alice();
        let debug = format!("{key:?}");
        assert!(debug.contains(ALICE_PUBLIC), "{debug}");
        assert!(!debug.contains(ALICE_SECRET), "{debug}");
        assert!(!debug.contains(&ALICE_SECRET[..8]), "{debug}");
    }
}
