//! Retrying calls that fail because the canister could not be reached.

use std::time::Duration;

use crate::api::ApiError;
use crate::output::Progress;

/// Exponential backoff: `attempts` tries in all, waiting `first`, then twice as long, ...
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub attempts: u32,
    pub first: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            attempts: 5,
            first: Duration::from_millis(500),
        }
    }
}

impl Backoff {
    /// Runs `f`, retrying while it fails with a transient transport error, and telling the
    /// user each time through `progress`. Other errors, and the last failure, are returned.
    pub fn run<T>(
        &self,
        what: &str,
        progress: &mut dyn Progress,
        mut f: impl FnMut(&mut dyn Progress) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut delay = self.first;
        let mut attempt = 1;
        loop {
            match f(&mut *progress) {
                Err(ApiError::Transport(e)) if e.is_transient() && attempt < self.attempts => {
                    progress.note(&format!(
                        "{what}: {e}; retrying in {:.1} s ({attempt}/{})",
                        delay.as_secs_f64(),
                        self.attempts
                    ));
                    std::thread::sleep(delay);
                    delay *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::TransportError;

    #[derive(Default)]
    struct Notes(Vec<String>);

    impl Progress for Notes {
        fn start(&mut self, _: &str, _: u64) {}
        fn set(&mut self, _: u64) {}
        fn finish(&mut self, _: &str) {}
        fn note(&mut self, line: &str) {
            self.0.push(line.to_string());
        }
    }

    fn unreachable() -> ApiError {
        ApiError::Transport(TransportError::Unreachable {
            method: "round_info".into(),
            message: "connection refused".into(),
        })
    }

    const FAST: Backoff = Backoff {
        attempts: 4,
        first: Duration::from_millis(1),
    };

    #[test]
    fn retries_transient_failures_and_says_so() {
        let mut notes = Notes::default();
        let mut calls = 0;
        let r = FAST.run("reading the round", &mut notes, |_| {
            calls += 1;
            if calls < 3 {
                Err(unreachable())
            } else {
                Ok(calls)
            }
        });
        assert_eq!(r.unwrap(), 3);
        assert_eq!(notes.0.len(), 2);
        assert!(
            notes.0[0].contains("connection refused") && notes.0[0].contains("retrying in"),
            "{:?}",
            notes.0
        );
    }

    #[test]
    fn gives_up_after_the_last_attempt() {
        let mut notes = Notes::default();
        let mut calls = 0;
        let r: Result<(), _> = FAST.run("uploading", &mut notes, |_| {
            calls += 1;
            Err(unreachable())
        });
        assert!(matches!(
            r,
            Err(ApiError::Transport(TransportError::Unreachable { .. }))
        ));
        assert_eq!(calls, 4);
        assert_eq!(notes.0.len(), 3);
    }

    #[test]
    fn does_not_retry_a_rejection() {
        let mut notes = Notes::default();
        let mut calls = 0;
        let r: Result<(), _> = FAST.run("uploading", &mut notes, |_| {
            calls += 1;
            Err(ApiError::Transport(TransportError::Rejected {
                method: "put_chunk".into(),
                message: "no".into(),
            }))
        });
        assert!(r.is_err());
        assert_eq!(calls, 1);
        assert!(notes.0.is_empty());
    }
}
