//! An image's file, downloaded from a source into the pool and verified
//! before anything is installed from it.
//!
//! ```text
//! <pool>/<image-uuid>-download/     a dataset of its own: the pool's reserve bounds it
//!   <sha1>                          the file, as far as it arrived (named by the
//!                                   manifest's sha1: a file of another version is stale)
//! ```
//!
//! The file is streamed to disk and hashed as it arrives (SHA-1, and
//! SHA-256 when the manifest gives one). A connection that drops, stalls
//! or ends short is resumed where the file ends with a `Range` request,
//! up to [`ATTEMPTS`] times in one import; a server that answers a range
//! with the whole file (200) is read again from the start. What arrived
//! stays when the attempts run out, so the next `imgadm import` resumes
//! it (hashing what is there first). A file whose size or digests do not
//! match the manifest is deleted: nothing is installed from it, and the
//! next import downloads it anew. A pool that fills up ends the download
//! at once and frees what it held.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Duration;

use zonevisor_api::{ApiError, ErrorKind, ImageUuid};

use super::client::{Source, SourceError};
use crate::images::{FileHashes, Manifest};
use crate::Daemon;

/// Attempts at a file in one import (the first and the resumptions).
pub(crate) const ATTEMPTS: u32 = 5;
/// The pause before the second attempt; doubled for each one after.
const FIRST_PAUSE: Duration = Duration::from_millis(250);

/// The dataset an image's file is downloaded into.
pub(crate) fn staging_name(uuid: ImageUuid) -> String {
    format!("{uuid}-download")
}

/// What a download tells as it goes.
pub(crate) enum Note {
    /// Bytes of the file held so far (resumed bytes included).
    Bytes(u64),
    /// A line for the user.
    Message(String),
}

/// A verified download.
pub(crate) struct Downloaded {
    /// The file, read-only, at its start.
    pub file: File,
    /// Where it is.
    pub path: PathBuf,
}

/// How one attempt ended short of the whole file.
enum Short {
    /// Worth another attempt: the connection failed or ended early.
    Interrupted(String),
    /// Not: the answer is wrong, or the file is not there.
    Fatal(ApiError),
    /// The pool is full: what was downloaded goes.
    Full(ApiError),
}

impl Daemon {
    /// Downloads the file of `m` from `src` into the pool (see the module
    /// doc); `note` hears of the bytes and of resumptions. The caller
    /// holds the image's lock.
    pub(crate) fn download_file(
        &self,
        src: &Source,
        m: &Manifest,
        note: &mut dyn FnMut(Note),
    ) -> Result<Downloaded, ApiError> {
        let name = staging_name(m.uuid);
        let dir = if self.pool.exists(&name) {
            self.pool.dataset_path(&name)
        } else {
            self.pool.create(&name).map_err(|e| self.pool_step_error("create the image's download dataset", e))?
        };
        // A file of another version of the manifest is of no use.
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_name() != m.sha1.as_str() {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let path = dir.join(&m.sha1);
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| crate::images::step_error("open the image's download file", e))?;
        // The digests of the file's first `.1` bytes.
        let mut hashes = (FileHashes::new(m), 0u64);
        let mut attempt = 0;
        loop {
            let mut have = file.metadata().map_err(|e| crate::images::step_error("read the download", e))?.len();
            if have > m.size {
                file.set_len(0).map_err(|e| crate::images::step_error("truncate the download", e))?;
                have = 0;
            }
            if hashes.1 != have {
                hashes = (hash_prefix(&mut file, m, have)?, have);
            }
            note(Note::Bytes(have));
            if have == m.size {
                break;
            }
            attempt += 1;
            match self.fetch(src, m, &mut file, &mut hashes, note) {
                Ok(()) => {}
                Err(Short::Fatal(e)) => {
                    // Nothing worth resuming: leave nothing behind.
                    if file.metadata().map(|md| md.len()).unwrap_or(0) == 0 {
                        drop(file);
                        self.drop_download(m.uuid);
                    }
                    return Err(e);
                }
                Err(Short::Full(e)) => {
                    drop(file);
                    self.drop_download(m.uuid);
                    return Err(e);
                }
                Err(Short::Interrupted(why)) => {
                    let at = file.metadata().map(|md| md.len()).unwrap_or(0);
                    if attempt >= ATTEMPTS {
                        return Err(ApiError::internal(format!(
                            "image {}: downloading its file from {} failed {ATTEMPTS} times, the last after \
                             {at} of {} bytes: {why}; what arrived is kept, and the next import resumes it",
                            m.uuid, src.url, m.size
                        )));
                    }
                    note(Note::Message(format!(
                        "Download of image {} interrupted at {at} of {} bytes ({why}); resuming (attempt {} of {ATTEMPTS})",
                        m.uuid,
                        m.size,
                        attempt + 1
                    )));
                    std::thread::sleep(FIRST_PAUSE * 2u32.pow(attempt - 1));
                }
            }
        }
        if let Some(errs) = hashes.0.check(m, &format!("the file downloaded from {}", src.url)) {
            drop(file);
            self.drop_download(m.uuid);
            let message =
                format!("image {}: its file does not match its manifest, and was deleted: {}", m.uuid, errs.summary());
            return Err(ApiError { kind: ErrorKind::Invalid, message, validation: Some(Box::new(errs)) });
        }
        drop(file);
        let file = File::open(&path).map_err(|e| crate::images::step_error("open the downloaded file", e))?;
        Ok(Downloaded { file, path })
    }

    /// Removes an image's download dataset when what it holds is of no
    /// use (or the pool is full), waiting until its space is free again;
    /// a failure is logged.
    pub(crate) fn drop_download(&self, uuid: ImageUuid) {
        let name = staging_name(uuid);
        if self.pool.exists(&name) {
            if let Err(e) = self.pool.destroy_and_wait(&name) {
                tracing::warn!(image = %uuid, error = %crate::chain(&e), "cannot remove an image's download dataset");
            }
        }
    }

    /// Removes an image's download dataset once the image is installed
    /// (the file system frees its space in the background); a failure is
    /// logged.
    pub(crate) fn forget_download(&self, uuid: ImageUuid) {
        let name = staging_name(uuid);
        if let Err(e) = self.pool.destroy(&name) {
            tracing::warn!(image = %uuid, error = %crate::chain(&e), "cannot remove an image's download dataset");
        }
    }

    /// One attempt: the file from where `file` ends (what `hashes` covers)
    /// to its end, appended and hashed into `hashes`, which always covers
    /// what the file holds when this returns.
    fn fetch(
        &self,
        src: &Source,
        m: &Manifest,
        file: &mut File,
        hashes: &mut (FileHashes, u64),
        note: &mut dyn FnMut(Note),
    ) -> Result<(), Short> {
        let mut from = hashes.1;
        let answer = match src.open_file(m.uuid, from) {
            Ok(a) => a,
            Err(e) if e.is_not_found() => {
                return Err(Short::Fatal(ApiError::not_found(format!(
                    "image {}: its file is not on the source: {e}",
                    m.uuid
                ))))
            }
            Err(e @ SourceError::Status { status, .. }) if status < 500 && status != 408 && status != 429 => {
                return Err(Short::Fatal(ApiError::internal(format!("image {}: {e}", m.uuid))))
            }
            Err(e @ SourceError::BadUrl { .. }) => return Err(Short::Fatal(ApiError::invalid(e.to_string()))),
            Err(other) => return Err(Short::Interrupted(other.to_string())),
        };
        let restart = |file: &mut File, hashes: &mut (FileHashes, u64), why: String| -> Short {
            match file.set_len(0) {
                Ok(()) => {
                    *hashes = (FileHashes::new(m), 0);
                    Short::Interrupted(why)
                }
                Err(e) => Short::Fatal(crate::images::step_error("truncate the download", e)),
            }
        };
        match answer.status {
            206 if from > 0 => {
                if !range_starts_at(answer.range.as_deref(), from, m.size) {
                    return Err(restart(
                        file,
                        hashes,
                        format!("the source sent the range {:?}, not bytes {from}- of the file", answer.range),
                    ));
                }
            }
            200 => {
                if from > 0 {
                    note(Note::Message(format!(
                        "Image {}: the source does not resume downloads (it sent the whole file); \
                         downloading it again from the start",
                        m.uuid
                    )));
                    file.set_len(0).map_err(|e| Short::Fatal(crate::images::step_error("truncate the download", e)))?;
                    *hashes = (FileHashes::new(m), 0);
                    from = 0;
                }
            }
            other => {
                return Err(Short::Fatal(ApiError::internal(format!(
                    "image {}: the source answered its file with HTTP {other}",
                    m.uuid
                ))))
            }
        }
        let want = m.size - from;
        if let Some(len) = answer.length {
            if len != want {
                return Err(Short::Fatal(ApiError::internal(format!(
                    "image {}: the source says its file {}is {len} bytes (Content-Length), the manifest says {}",
                    m.uuid,
                    if from > 0 { format!("from byte {from} ") } else { String::new() },
                    if from > 0 { want.to_string() } else { m.size.to_string() }
                ))));
            }
        }
        file.seek(SeekFrom::Start(from))
            .map_err(|e| Short::Fatal(crate::images::step_error("seek the download", e)))?;
        let mut body = answer.body.into_reader().take(want + 1);
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0u64;
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = file.set_len(from + got);
                    return Err(Short::Interrupted(e.to_string()));
                }
            };
            if got + n as u64 > want {
                let _ = file.set_len(from + got);
                return Err(Short::Fatal(ApiError::internal(format!(
                    "image {}: the source sent more than the {} bytes its manifest says",
                    m.uuid, m.size
                ))));
            }
            if let Err(e) = file.write_all(&buf[..n]) {
                let _ = file.set_len(from + got);
                return Err(if matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) {
                    Short::Full(self.download_write_error(m, from + got, e))
                } else {
                    Short::Fatal(self.download_write_error(m, from + got, e))
                });
            }
            hashes.0.update(&buf[..n]);
            got += n as u64;
            hashes.1 = from + got;
            note(Note::Bytes(from + got));
        }
        if got < want {
            return Err(Short::Interrupted(format!("the connection ended after {} of {} bytes", from + got, m.size)));
        }
        Ok(())
    }

    /// A failed write of a download, saying so plainly when the pool is full.
    fn download_write_error(&self, m: &Manifest, at: u64, e: std::io::Error) -> ApiError {
        if matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) {
            ApiError::internal(format!(
                "image {}: pool {} is full after {at} of the file's {} bytes (free space for datasets: none; \
                 delete instances or images); the download was deleted",
                m.uuid,
                self.pool.name(),
                m.size
            ))
        } else {
            ApiError::internal(format!("image {}: writing its download: {e}", m.uuid))
        }
    }
}

/// Whether a `Content-Range` says the answer starts at byte `from` of a
/// file of `size` bytes (`bytes <from>-<last>/<size or *>`).
fn range_starts_at(range: Option<&str>, from: u64, size: u64) -> bool {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes ")) else { return false };
    let Some((span, total)) = spec.split_once('/') else { return false };
    let Some((first, last)) = span.split_once('-') else { return false };
    first.trim().parse::<u64>() == Ok(from)
        && last.trim().parse::<u64>() == Ok(size - 1)
        && (total.trim() == "*" || total.trim().parse::<u64>() == Ok(size))
}

/// The digests of the first `len` bytes of `file` (a download resumed).
fn hash_prefix(file: &mut File, m: &Manifest, len: u64) -> Result<FileHashes, ApiError> {
    let mut hashes = FileHashes::new(m);
    file.seek(SeekFrom::Start(0)).map_err(|e| crate::images::step_error("read the download", e))?;
    let mut reader = (&mut *file).take(len);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hashes.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(crate::images::step_error("read the download", e)),
        }
    }
    Ok(hashes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_are_checked() {
        assert!(range_starts_at(Some("bytes 100-999/1000"), 100, 1000));
        assert!(range_starts_at(Some("bytes 100-999/*"), 100, 1000));
        assert!(!range_starts_at(Some("bytes 0-999/1000"), 100, 1000));
        assert!(!range_starts_at(Some("bytes 100-998/1000"), 100, 1000));
        assert!(!range_starts_at(Some("bytes 100-999/2000"), 100, 1000));
        assert!(!range_starts_at(None, 100, 1000));
        assert!(!range_starts_at(Some("items 100-999/1000"), 100, 1000));
    }
}
