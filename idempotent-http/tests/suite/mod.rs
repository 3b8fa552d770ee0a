//! The HTTP layer's behaviour, written once and run on every store: each
//! case is an async function of a [`Store`], and [`http_suite!`] turns the
//! list into tests of one store's test binary.

// Each test binary uses the helpers its own store-specific tests need.
#![allow(dead_code)]

pub mod app;
pub mod cases;
pub mod client;

use std::any::Any;
use std::sync::Arc;

use idempotent_core::Backend;

/// A fresh, empty store for one test, and whatever keeps it alive (a private
/// `redis-server`).
pub struct Store {
    pub backend: Arc<dyn Backend>,
    _keep_alive: Box<dyn Any + Send>,
}

impl Store {
    pub fn new(backend: impl Backend + 'static, keep_alive: impl Any + Send) -> Store {
        Store {
            backend: Arc::new(backend),
            _keep_alive: Box::new(keep_alive),
        }
    }
}

/// One test per case, each on a store made by `$store` (an async closure).
macro_rules! http_suite {
    ($store:expr) => {
        $crate::suite::http_suite!(@each $store;
            replay_carries_the_marker_the_status_the_allowed_headers_and_the_body,
            quoted_and_plain_keys_are_the_same_key,
            a_request_without_a_key_passes_through,
            a_required_key_that_is_missing_is_400,
            malformed_and_repeated_keys_are_400,
            a_key_over_the_length_limit_is_400,
            a_body_over_the_limit_is_413_and_the_handler_does_not_run,
            the_key_with_another_body_path_or_query_is_422,
            configured_headers_join_the_fingerprint,
            a_duplicate_while_the_first_runs_is_409_with_retry_after,
            fifty_concurrent_duplicates_run_once_and_the_others_get_409,
            fifty_concurrent_duplicates_with_wait_all_get_the_one_response,
            a_server_error_releases_the_key_so_the_retry_runs,
            client_errors_are_stored_and_replayed,
            a_429_is_not_stored,
            keys_are_scoped_per_client,
            only_post_and_patch_apply_by_default,
            problem_types_are_about_blank_or_under_the_configured_base,
            a_replay_carries_the_representation_headers,
            a_shared_key_space_replays_to_every_client,
            an_event_stream_streams_through_and_a_retry_does_not_run_it_again,
            a_response_over_the_limit_streams_through_and_is_not_run_again,
            an_event_stream_reaches_the_wire_before_it_ends,
            a_response_of_exactly_max_response_bytes_is_stored,
            stream_if_chooses_what_streams,
            a_client_that_gives_up_while_the_body_is_read_gets_a_replay_on_retry,
            a_client_that_gives_up_while_the_handler_runs_frees_the_key,
            a_client_that_gives_up_before_the_body_passes_the_limit_leaves_it_streamed,
            a_body_that_fails_after_the_head_is_not_run_again,
        );
    };
    (@each $store:expr; $($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let store = ($store)().await;
            $crate::suite::cases::$case(store).await;
        }
    )*};
}

pub(crate) use http_suite;
