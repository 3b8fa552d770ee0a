//! Errors print their own message and return their cause from `source()`,
//! never both: a chain printed level by level (anyhow's `{:#}`, a loop
//! over `source()`, tracing's error fields) says each cause once.

use idempotent_core::{BackendError, BackendErrorKind, CodecError, Error};

fn io_error() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused")
}

/// Every message of `error`'s chain, outermost first.
fn chain(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut messages = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        messages.push(cause.to_string());
        source = cause.source();
    }
    messages
}

fn assert_said_once(error: &(dyn std::error::Error + 'static), levels: usize) {
    let messages = chain(error);
    assert_eq!(messages.len(), levels, "{messages:#?}");
    for pair in messages.windows(2) {
        assert!(
            !pair[0].contains(&pair[1]),
            "{:?} prints its source {:?} too; chain: {messages:#?}",
            pair[0],
            pair[1]
        );
    }
}

fn backend_error() -> BackendError {
    BackendError::new(BackendErrorKind::Unavailable, "could not reach the store")
        .with_source(io_error())
}

#[test]
fn a_backend_error_prints_its_message_and_returns_its_cause() {
    let error = backend_error();
    assert_eq!(
        error.to_string(),
        "store unavailable: could not reach the store"
    );
    assert_said_once(&error, 2);
    assert_said_once(&BackendError::new(BackendErrorKind::Other, "no cause"), 1);
}

#[test]
fn a_codec_error_prints_its_message_and_returns_its_cause() {
    let source = serde_json::from_str::<u32>("\"text\"").unwrap_err();
    let error = CodecError::new("the stored result does not decode").with_source(source);
    assert_eq!(error.to_string(), "the stored result does not decode");
    assert_said_once(&error, 2);
}

#[test]
fn the_calls_errors_print_their_message_and_return_their_cause() {
    assert_said_once(&Error::Backend(backend_error()), 3);
    assert_said_once(&Error::CommitUnknown(backend_error()), 3);
    let corrupt =
        BackendError::new(BackendErrorKind::Corrupt, "bad record").with_source(io_error());
    // Codec(CodecError("corrupt") -> BackendError -> io::Error).
    assert_said_once(&Error::from(corrupt), 4);
    assert_said_once(&Error::InProgress, 1);
}
