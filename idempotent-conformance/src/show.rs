//! Failure messages that summarize outputs instead of dumping them (an
//! output may be 512 KiB).

use std::fmt::{self, Debug};

use idempotent_core::backend::ClaimOutcome;

/// A printable summary of a claim's outcome, without dumping large outputs.
pub(crate) struct Show<'a>(pub(crate) &'a ClaimOutcome);

impl Debug for Show<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            ClaimOutcome::Completed { output } => {
                write!(f, "Completed {{ output: {} }}", ShowBytes(output))
            }
            other => Debug::fmt(other, f),
        }
    }
}

/// Bytes as `N bytes [first bytes...]`.
pub(crate) struct ShowBytes<'a>(pub(crate) &'a [u8]);

impl fmt::Display for ShowBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 32;
        let bytes = self.0;
        write!(
            f,
            "{} bytes {:?}",
            bytes.len(),
            &bytes[..bytes.len().min(SHOWN)]
        )?;
        if bytes.len() > SHOWN {
            f.write_str("...")?;
        }
        Ok(())
    }
}
