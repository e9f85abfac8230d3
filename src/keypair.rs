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
//! The file is created with mode `0600` on unix, and `load` refuses one that others
//! could have read or replaced: see [`KeyFileCheck`].

use std::fmt::{self, Write as _};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use zeroize::{Zeroize, Zeroizing};

use crate::peer::{PeerId, nibble};
use crate::secret::SecretKey;
use crate::secure::NOISE_PARAMS;

/// Line 1 of a key file.
const HEADER: &str = "p2p-noise-key-v1";

/// The length of the key file [`Keypair::save`] writes: the header and two lines of a
/// name, a space and 64 hex digits, each line ending in `\n`.
const FILE_LEN: usize = HEADER.len() + 1 + 2 * ("secret ".len() + 64 + 1);

/// A key file is 161 bytes (164 with CRLF); anything much longer is not one, and is
/// not read into memory whole.
const MAX_FILE_LEN: u64 = 1024;

/// The node's X25519 noise static keypair; its public key is the node's [`PeerId`].
///
/// This is the static key of the node's `Noise_XX_25519_ChaChaPoly_BLAKE2s`
/// handshakes, so a peer id cannot be claimed without the matching secret. `Debug`
/// prints only the peer id, never the secret.
///
/// The secret is held once, on the heap, and wiped when the last holder drops it:
/// clones of a keypair, the node running with it and each connection's handshake share
/// that one copy. The hex text of the secret that [`load`](Keypair::load) reads and
/// [`save`](Keypair::save) writes is wiped too.
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
/// On unix the file is created with mode `0600`, and [`load`](Keypair::load) refuses a
/// file that is a symbolic link, is not owned by the user running the process, or is
/// open to group or others, as ssh does with private keys; [`KeyFileCheck`] says exactly
/// what is checked, and how to load such a file anyway.
#[derive(Clone)]
pub struct Keypair {
    secret: SecretKey,
    id: PeerId,
}

/// How much [`Keypair::load_with`] and [`Keypair::load_or_generate_with`] trust a key
/// file before reading it.
///
/// Anyone who can read the key file can act as the node; anyone who can write it, or
/// point a symbolic link somewhere else, chooses the node's identity. So by default
/// ([`Strict`](KeyFileCheck::Strict), what [`Keypair::load`] uses) a key file must be
/// private to the user running the process, as ssh requires of private keys.
///
/// # Example
///
/// A key file that a deployment tool mounts as a symbolic link, readable by a group,
/// is only loaded when the application says so:
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::path::Path;
/// use p2p::{KeyError, KeyFileCheck, Keypair};
///
/// let path = Path::new("/run/secrets/node.key");
/// let keypair = match Keypair::load(path) {
///     Ok(keypair) => keypair,
///     // Mounted by the orchestrator, which is trusted to keep others out.
///     Err(KeyError::Symlink { .. } | KeyError::OpenToOthers { .. }) => {
///         Keypair::load_with(path, KeyFileCheck::Permissive)?
///     }
///     Err(e) => return Err(e.into()),
/// };
/// # let _ = keypair;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyFileCheck {
    /// Refuse the file, before reading a byte of it, when
    ///
    /// * the path is a symbolic link ([`KeyError::Symlink`]); it is not followed
    ///   (directories on the way to it may be links);
    /// * it is not a regular file, e.g. a directory or a FIFO ([`KeyError::NotAFile`]);
    /// * on unix, its owner is not the process's effective user
    ///   ([`KeyError::WrongOwner`]);
    /// * on unix, any permission bit is set for group or others, mode `& 0o077 != 0`
    ///   ([`KeyError::OpenToOthers`]): `0600` and `0400` pass.
    ///
    /// The owner and mode are those of the file opened, not of a path looked at before,
    /// so the file cannot be swapped between the check and the read. On other systems
    /// the symbolic link is checked on the path before opening (a race a local attacker
    /// could win), the file type on the opened file, and owner and access rights
    /// (ACLs) are not checked.
    #[default]
    Strict,
    /// Read the file whatever it is: symbolic links are followed, and any owner, type
    /// and mode are accepted. What `Strict` would have refused is logged as a warning
    /// (through `log`). For files whose protection is someone else's job, such as
    /// secrets mounted by an orchestrator, or a pipe from a secret store.
    Permissive,
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
    /// The key file's path is a symbolic link, which [`KeyFileCheck::Strict`] does not
    /// follow: whoever can change the link chooses the key.
    #[error(
        "key file {} is a symbolic link, which is not followed: give the path of the file itself",
        path.display()
    )]
    Symlink {
        /// The key file.
        path: PathBuf,
    },
    /// The key file is not a regular file (a directory, a FIFO, a device...).
    #[error("key file {} is not a regular file", path.display())]
    NotAFile {
        /// The key file.
        path: PathBuf,
    },
    /// The key file is owned by another user than the one running the process, who
    /// could read or replace it ([`KeyFileCheck::Strict`]).
    #[error(
        "key file {} is owned by uid {owner}, not by uid {user} running this process: \
         `chown {user} {}` if it is the right file",
        path.display(),
        path.display()
    )]
    WrongOwner {
        /// The key file.
        path: PathBuf,
        /// The file's owner.
        owner: u32,
        /// The effective user of this process.
        user: u32,
    },
    /// Group or others have some access to the key file: they may have read the secret
    /// or chosen it ([`KeyFileCheck::Strict`]).
    #[error(
        "key file {} has mode {mode:04o}, open to group or others: `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    OpenToOthers {
        /// The key file.
        path: PathBuf,
        /// Its permission bits (`0o7777` at most).
        mode: u32,
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
        let mut pair = snow::Builder::new(params)
            .generate_keypair()
            .map_err(KeyError::Random)?;
        let secret = SecretKey::filled_by(|secret| {
            let private = pair.private.get(..32).ok_or(KeyError::NoCurve25519)?;
            secret.copy_from_slice(private);
            Ok(())
        });
        // snow's copy is a plain Vec.
        pair.private.zeroize();
        let keypair = Keypair::from_secret_key(secret?);
        // snow derived the same public key; a mismatch would mean two X25519s disagree.
        debug_assert_eq!(keypair.id.as_bytes().as_slice(), pair.public.as_slice());
        Ok(keypair)
    }

    /// The keypair with this X25519 secret key; the public key is derived from it
    /// (X25519 with the base point, clamping the secret as RFC 7748 specifies).
    ///
    /// The keypair keeps its own copy, wiped when dropped; `secret` itself is the
    /// caller's to wipe.
    pub fn from_secret(secret: [u8; 32]) -> Result<Keypair, KeyError> {
        Ok(Keypair::from_secret_key(SecretKey::from(secret)))
    }

    /// The keypair of `secret`, sharing it.
    pub(crate) fn from_secret_key(secret: SecretKey) -> Keypair {
        let id = PeerId::from_bytes(crate::resolver::public_key(secret.as_bytes()));
        Keypair { secret, id }
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
        self.secret.as_bytes()
    }

    /// The secret, shared rather than copied.
    pub(crate) fn secret_key(&self) -> &SecretKey {
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
    /// each line ending in `\n`. The text goes to a new temporary file in the same
    /// directory, with an unpredictable name, created exclusively and with mode `0600`
    /// on unix; it is flushed to disk and then renamed over `path`, so a crash leaves
    /// either the old file or the whole new one, never half a key. A symbolic link at
    /// `path` is replaced, not written through.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        write_atomically(path, self.file_text().as_bytes(), Replace::Yes).map(|_| ())
    }

    /// Reads a keypair written by [`save`](Self::save), from a file private to this
    /// user: [`load_with`](Self::load_with) with [`KeyFileCheck::Strict`].
    ///
    /// Fails with [`KeyError::Io`] if the file cannot be read, with
    /// [`KeyError::Malformed`] if it is not in the
    /// [documented format](Keypair#key-file-format) or its `public` line does not match
    /// the secret, and with [`KeyError::Symlink`], [`KeyError::NotAFile`],
    /// [`KeyError::WrongOwner`] or [`KeyError::OpenToOthers`] if others could have read
    /// or chosen the key.
    pub fn load(path: &Path) -> Result<Keypair, KeyError> {
        Keypair::load_with(path, KeyFileCheck::Strict)
    }

    /// Reads a keypair written by [`save`](Self::save), checking the file as `check`
    /// says first (see [`KeyFileCheck`] for an example).
    pub fn load_with(path: &Path, check: KeyFileCheck) -> Result<Keypair, KeyError> {
        let io_err = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        if check == KeyFileCheck::Permissive
            && let Some(link) = symlink_refusal(path)
        {
            log::warn!("{link} (followed: KeyFileCheck::Permissive)");
        }
        let file = open_key_file(path, check)?;
        match (check_opened(&file, path), check) {
            (Ok(()), _) => {}
            (Err(refused), KeyFileCheck::Strict) => return Err(refused),
            (Err(refused), KeyFileCheck::Permissive) => {
                log::warn!("{refused} (loaded anyway: KeyFileCheck::Permissive)");
            }
        }
        // Sized up front, so reading never reallocates and leaves a copy of the
        // secret's text behind unwiped.
        let mut text = Zeroizing::new(Vec::with_capacity(MAX_FILE_LEN as usize + 1));
        file.take(MAX_FILE_LEN + 1)
            .read_to_end(&mut text)
            .map_err(io_err)?;
        parse(&text).map_err(|reason| KeyError::Malformed {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Loads the keypair at `path`, or, if there is no file there, generates one and
    /// saves it (mode `0600` on unix) for next time:
    /// [`load_or_generate_with`](Self::load_or_generate_with) with
    /// [`KeyFileCheck::Strict`].
    ///
    /// Any other problem with an existing file (unreadable, malformed, refused as
    /// [`load`](Self::load) refuses it) is an error; the file is never overwritten. If
    /// another process creates the file at the same time, both end up with the key that
    /// is on disk.
    pub fn load_or_generate(path: &Path) -> Result<Keypair, KeyError> {
        Keypair::load_or_generate_with(path, KeyFileCheck::Strict)
    }

    /// As [`load_or_generate`](Self::load_or_generate), checking an existing file as
    /// `check` says.
    pub fn load_or_generate_with(path: &Path, check: KeyFileCheck) -> Result<Keypair, KeyError> {
        match Keypair::load_with(path, check) {
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
            Written::AlreadyExists => Keypair::load_with(path, check),
        }
    }

    /// The key file's text, in the documented format; wiped when dropped.
    fn file_text(&self) -> Zeroizing<String> {
        // Sized up front: a String that grows leaves its old buffers, with the secret
        // in them, unwiped.
        let mut text = Zeroizing::new(String::with_capacity(FILE_LEN));
        text.push_str(HEADER);
        text.push_str("\nsecret ");
        crate::peer::write_hex(&mut text, self.secret.as_bytes());
        // The public key is no secret.
        let _ = write!(text, "\npublic {}\n", self.id);
        text
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keypair")
            .field("peer_id", &format_args!("{}", self.id))
            .finish_non_exhaustive()
    }
}

/// Opens the key file for reading; under [`KeyFileCheck::Strict`] without following a
/// symbolic link (the refusal is [`KeyError::Symlink`]) or waiting for a FIFO's writer.
#[cfg(unix)]
fn open_key_file(path: &Path, check: KeyFileCheck) -> Result<File, KeyError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = OpenOptions::new();
    options.read(true);
    if check == KeyFileCheck::Strict {
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    options.open(path).map_err(|source| {
        let link = (check == KeyFileCheck::Strict).then(|| symlink_refusal(path));
        link.flatten().unwrap_or(KeyError::Io {
            path: path.to_path_buf(),
            source,
        })
    })
}

/// Opens the key file for reading; under [`KeyFileCheck::Strict`] refusing a symbolic
/// link seen just before (a local attacker could swap the path in between).
#[cfg(not(unix))]
fn open_key_file(path: &Path, check: KeyFileCheck) -> Result<File, KeyError> {
    if check == KeyFileCheck::Strict
        && let Some(refused) = symlink_refusal(path)
    {
        return Err(refused);
    }
    File::open(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// [`KeyError::Symlink`] if `path` is a symbolic link. On unix, under
/// [`KeyFileCheck::Strict`], this only names the reason the open already failed for
/// (`ELOOP` on Linux, other codes elsewhere), so it races with nothing.
fn symlink_refusal(path: &Path) -> Option<KeyError> {
    let is_link = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    is_link.then(|| KeyError::Symlink {
        path: path.to_path_buf(),
    })
}

/// What [`KeyFileCheck::Strict`] refuses in the file opened (not in whatever the path
/// names by now): another type than a regular file, another owner than this process's
/// effective user, any access for group or others.
#[cfg(unix)]
fn check_opened(file: &File, path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::MetadataExt;
    let metadata = file.metadata().map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let path = path.to_path_buf();
    if !metadata.is_file() {
        return Err(KeyError::NotAFile { path });
    }
    // SAFETY: geteuid has no preconditions and cannot fail (POSIX).
    let user: u32 = unsafe { libc::geteuid() };
    if metadata.uid() != user {
        let owner = metadata.uid();
        return Err(KeyError::WrongOwner { path, owner, user });
    }
    let mode = metadata.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::OpenToOthers { path, mode });
    }
    Ok(())
}

/// What [`KeyFileCheck::Strict`] refuses in the file opened: another type than a
/// regular file. Owners and ACLs are not checked here.
#[cfg(not(unix))]
fn check_opened(file: &File, path: &Path) -> Result<(), KeyError> {
    let metadata = file.metadata().map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if metadata.is_file() {
        Ok(())
    } else {
        Err(KeyError::NotAFile {
            path: path.to_path_buf(),
        })
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
    let secret = SecretKey::filled_by(|secret| parse_field(lines[1], 2, "secret", secret))?;
    let mut public = [0u8; 32];
    parse_field(lines[2], 3, "public", &mut public)?;
    let keypair = Keypair::from_secret_key(secret);
    if keypair.id.as_bytes() != &public {
        return Err(format!(
            "public key in file does not match the secret (the secret's public key is {})",
            keypair.id
        ));
    }
    Ok(keypair)
}

/// Parses line `number`, `<name> <64 hex digits>`, into `out`. Never quotes the line's
/// value.
fn parse_field(line: &str, number: usize, name: &str, out: &mut [u8; 32]) -> Result<(), String> {
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
    Ok(())
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

/// A temporary file's path next to `path`: `.<name>.tmp-<32 random hex digits>`.
///
/// The name is unpredictable so that someone else who can create files in the
/// directory (a shared or sticky one) cannot plant one where the key is about to be
/// written and so stop it being saved.
fn temp_path_beside(path: &Path) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path does not name a file"))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut random = [0u8; 16];
    getrandom::fill(&mut random)
        .map_err(|e| io::Error::other(format!("no randomness for a temporary file name: {e}")))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp-");
    tmp_name.push(crate::peer::hex(&random));
    Ok(dir.join(tmp_name))
}

/// Writes `contents` to a fresh `0600` temporary file next to `path`, syncs it, and
/// moves it to `path`: by rename (replacing), or by hard link (not replacing, so two
/// processes creating the same key file cannot overwrite each other's).
fn write_atomically(path: &Path, contents: &[u8], replace: Replace) -> Result<Written, KeyError> {
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

    let tmp = temp_path_beside(path).map_err(io_err)?;
    let dir = tmp.parent().unwrap_or(Path::new("."));
    // create_new is O_CREAT | O_EXCL: a file or symbolic link already at `tmp` fails
    // the call instead of being written through.
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
    use std::sync::atomic::{AtomicU64, Ordering};

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

    /// Writes `text` to a new file only its owner may read or write, as `load` wants it.
    fn write_private(path: &Path, text: impl AsRef<[u8]>) {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        options
            .open(path)
            .unwrap()
            .write_all(text.as_ref())
            .unwrap();
    }

    /// Writes `text` to a file and loads it, expecting `Malformed` naming that file.
    fn malformed(text: impl AsRef<[u8]>) -> String {
        let dir = TempDir::new();
        let path = dir.path("key");
        write_private(&path, text);
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
        write_private(&path, text);
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
        write_private(&path, "hello\n");
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
        fs::remove_file(&path).unwrap();
        write_private(&path, "garbage");
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

    #[test]
    fn clones_share_the_secret_rather_than_copy_it() {
        let key = alice();
        let clone = key.clone();
        assert!(
            std::ptr::eq(key.secret(), clone.secret()),
            "the clone holds a copy of the secret"
        );
    }

    #[test]
    fn file_text_is_built_without_reallocating() {
        // A reallocation would leave a copy of the secret's hex in freed memory.
        let text = alice().file_text();
        assert_eq!(*text, alice_text());
        assert_eq!((text.len(), text.capacity()), (FILE_LEN, FILE_LEN));
    }

    #[test]
    fn a_loaded_keypair_completes_a_handshake_as_its_peer_id() {
        let dir = TempDir::new();
        let path = dir.path("node.key");
        let saved = Keypair::generate().unwrap();
        saved.save(&path).unwrap();
        let loaded = Keypair::load(&path).unwrap();
        let params: snow::params::NoiseParams = NOISE_PARAMS.parse().unwrap();
        let mut i = snow::Builder::with_resolver(
            params.clone(),
            Box::new(crate::NoiseResolver::for_key(&loaded)),
        )
        .local_private_key(loaded.secret())
        .unwrap()
        .build_initiator()
        .unwrap();
        let bob = bytes32(BOB_SECRET);
        let mut r = snow::Builder::new(params)
            .local_private_key(&bob)
            .unwrap()
            .build_responder()
            .unwrap();
        crate::resolver::run_xx(&mut i, &mut r);
        assert_eq!(r.get_remote_static().unwrap(), saved.peer_id().as_bytes());
    }

    #[test]
    fn temporary_names_are_unpredictable() {
        let path = Path::new("/some/dir/node.key");
        let a = temp_path_beside(path).unwrap();
        let b = temp_path_beside(path).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.parent(), Some(Path::new("/some/dir")));
        let name = a.file_name().unwrap().to_str().unwrap();
        let suffix = name.strip_prefix(".node.key.tmp-").unwrap();
        assert_eq!(suffix.len(), 32, "{name}");
        assert!(suffix.bytes().all(|c| c.is_ascii_hexdigit()), "{name}");
        let bare = temp_path_beside(Path::new("node.key")).unwrap();
        assert_eq!(bare.parent(), Some(Path::new(".")));
    }

    #[cfg(unix)]
    #[test]
    fn files_planted_at_predictable_temporary_names_do_not_stop_a_save() {
        // Someone who may create files in the key's directory plants a symbolic link at
        // every temporary name a save could predictably use (pid and a counter; this
        // test binary saves far fewer than 256 files before this one).
        let dir = TempDir::new();
        let victim = dir.path("victim");
        let planted = 256;
        for name in ["key", "fresh.key"] {
            for n in 0..planted {
                let tmp = dir.path(&format!(".{name}.tmp-{}-{n}", std::process::id()));
                std::os::unix::fs::symlink(&victim, tmp).unwrap();
            }
        }
        let path = dir.path("key");
        alice()
            .save(&path)
            .expect("save despite files at the predictable temporary names");
        assert_eq!(fs::read_to_string(&path).unwrap(), alice_text());
        let fresh = Keypair::load_or_generate(&dir.path("fresh.key"))
            .expect("create despite files at the predictable temporary names");
        assert_eq!(
            Keypair::load(&dir.path("fresh.key")).unwrap().peer_id(),
            fresh.peer_id()
        );
        // Nothing went through a link, and no temporary file is left.
        assert!(!victim.exists());
        assert_eq!(dir.entries().len(), 2 * planted + 2);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_is_refused_not_followed() {
        let dir = TempDir::new();
        let target = dir.path("real.key");
        alice().save(&target).unwrap();
        let link = dir.path("node.key");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = Keypair::load(&link).unwrap_err();
        assert!(
            matches!(&err, KeyError::Symlink { path } if *path == link),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(&*link.to_string_lossy()), "{message}");
        assert!(message.contains("symbolic link"), "{message}");
        assert!(matches!(
            Keypair::load_or_generate(&link),
            Err(KeyError::Symlink { .. })
        ));
        // A dangling link is refused too, not taken for a missing file to create.
        let dangling = dir.path("dangling.key");
        std::os::unix::fs::symlink(dir.path("nowhere"), &dangling).unwrap();
        assert!(matches!(
            Keypair::load_or_generate(&dangling),
            Err(KeyError::Symlink { .. })
        ));
        assert!(!dir.path("nowhere").exists());
        assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
    }

    #[cfg(unix)]
    fn mkfifo(path: &Path) {
        use std::os::unix::ffi::OsStrExt;
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_or_directory_is_refused_without_being_opened_for_reading() {
        // Opened for reading, a FIFO with no writer would block the load forever.
        let dir = TempDir::new();
        let fifo = dir.path("fifo");
        mkfifo(&fifo);
        let err = Keypair::load(&fifo).unwrap_err();
        assert!(
            matches!(&err, KeyError::NotAFile { path } if *path == fifo),
            "{err:?}"
        );
        assert!(err.to_string().contains("not a regular file"), "{err}");
        // Through a link, the link is refused before the FIFO is reached.
        let link = dir.path("link");
        std::os::unix::fs::symlink(&fifo, &link).unwrap();
        assert!(matches!(
            Keypair::load(&link),
            Err(KeyError::Symlink { .. })
        ));
        let sub = dir.path("sub");
        fs::create_dir(&sub).unwrap();
        assert!(matches!(
            Keypair::load(&sub),
            Err(KeyError::NotAFile { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn a_file_open_to_group_or_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new();
        let path = dir.path("key");
        alice().save(&path).unwrap();
        for mode in [
            0o640, 0o604, 0o620, 0o602, 0o610, 0o601, 0o644, 0o660, 0o666, 0o777, 0o440,
        ] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = Keypair::load(&path).unwrap_err();
            assert!(
                matches!(&err, KeyError::OpenToOthers { path: p, mode: m } if *p == path && *m == mode),
                "mode {mode:o}: {err:?}"
            );
            let message = err.to_string();
            assert!(
                message.contains(&format!("chmod 600 {}", path.display())),
                "{message}"
            );
            assert!(message.contains(&format!("{mode:04o}")), "{message}");
            assert!(matches!(
                Keypair::load_or_generate(&path),
                Err(KeyError::OpenToOthers { .. })
            ));
        }
        for mode in [0o600, 0o400, 0o700] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(Keypair::load(&path).unwrap().peer_id(), alice().peer_id());
        }
    }

    #[cfg(unix)]
    fn euid() -> u32 {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() }
    }

    #[cfg(unix)]
    #[test]
    fn a_file_of_another_user_is_refused() {
        if euid() != 0 {
            eprintln!("skipped: only root can give a file to another user");
            return;
        }
        let dir = TempDir::new();
        let path = dir.path("key");
        alice().save(&path).unwrap();
        std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        let err = Keypair::load(&path).unwrap_err();
        assert!(
            matches!(&err, KeyError::WrongOwner { path: p, owner: 65534, user: 0 } if *p == path),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains("owned by uid 65534"), "{message}");
        assert!(
            message.contains(&format!("chown 0 {}", path.display())),
            "{message}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn permissive_loads_what_strict_refuses() {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(KeyFileCheck::default(), KeyFileCheck::Strict);
        let dir = TempDir::new();
        let target = dir.path("real.key");
        alice().save(&target).unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
        if euid() == 0 {
            std::os::unix::fs::chown(&target, Some(65534), None).unwrap();
        }
        let link = dir.path("node.key");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        for path in [&target, &link] {
            assert!(Keypair::load(path).is_err());
            let loaded = Keypair::load_with(path, KeyFileCheck::Permissive).unwrap();
            assert_eq!(loaded.peer_id(), alice().peer_id());
            let loaded = Keypair::load_or_generate_with(path, KeyFileCheck::Permissive).unwrap();
            assert_eq!(loaded.peer_id(), alice().peer_id());
        }
        // A pipe, as from a secret store, is read as the text comes.
        let fifo = dir.path("fifo");
        mkfifo(&fifo);
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::write(fifo, alice_text()))
        };
        let loaded = Keypair::load_with(&fifo, KeyFileCheck::Permissive).unwrap();
        writer.join().unwrap().unwrap();
        assert_eq!(loaded.peer_id(), alice().peer_id());
    }
}
