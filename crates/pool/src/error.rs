//! Pool errors.

use std::path::{Path, PathBuf};

/// Why a pool operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// A dataset name that is not allowed.
    #[error("invalid dataset name {0:?}")]
    BadName(String),
    /// The dataset already exists.
    #[error("dataset {0} already exists")]
    Exists(PathBuf),
    /// The dataset does not exist.
    #[error("dataset {0} does not exist")]
    NotFound(PathBuf),
    /// A volume file name that is not allowed.
    #[error("invalid volume name {0:?}")]
    BadVolumeName(String),
    /// The volume already exists.
    #[error("volume {0} already exists")]
    VolumeExists(PathBuf),
    /// The volume does not exist (or what is there is not a regular file).
    #[error("volume {0} does not exist")]
    VolumeNotFound(PathBuf),
    /// Making a volume smaller than it is, unasked: its end would be lost.
    #[error(
        "volume {path} is {current} bytes; shrinking it to {requested} bytes would discard its end \
         (refused unless forced)"
    )]
    Shrink {
        /// The volume (for a clone: its source).
        path: PathBuf,
        /// Its size now, in bytes.
        current: u64,
        /// The size asked for, in bytes.
        requested: u64,
    },
    /// The backend cannot do this.
    #[error("the {backend} pool backend cannot {what}")]
    Unsupported {
        /// Backend name.
        backend: &'static str,
        /// What was asked.
        what: &'static str,
    },
    /// The filesystem at the mountpoint, or on the pool's source, is not one
    /// the backend can use (or may touch).
    #[error("{path}: {reason}")]
    BadFilesystem {
        /// The mountpoint, device or file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The dataset is in use and cannot be destroyed.
    #[error("dataset {path} is busy: {reason}")]
    Busy {
        /// The dataset.
        path: PathBuf,
        /// What holds it.
        reason: String,
    },
    /// A system call or file operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A btrfs send stream that is not one, or would reach beyond what it
    /// was sent for (see `sendstream.rs`).
    #[error("refused btrfs send stream: {0}")]
    BadStream(String),
    /// A host command failed.
    #[error("{command} exited with {status}: {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
}

impl PoolError {
    /// An I/O error with what was being done and on which path.
    pub fn io(op: &'static str, path: impl AsRef<Path>, source: std::io::Error) -> Self {
        PoolError::Io { op, path: path.as_ref().to_path_buf(), source }
    }

    /// Whether the error is the pool running out of space or quota.
    pub fn is_no_space(&self) -> bool {
        matches!(self, PoolError::Io { source, .. } if matches!(source.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)))
    }
}
