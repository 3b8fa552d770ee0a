//! The cases of the suite. Each starts a server on the given store, talks to
//! it over HTTP and checks both the answers and how often handlers ran.

use std::sync::Arc;
use std::time::Duration;

use idempotent_http::key_space::Chosen;
use idempotent_http::IdempotencyLayer;
use reqwest::Method;
use tokio::io::AsyncReadExt;

use super::app::{download_byte, TestServer, MAX_BODY_BYTES, MAX_KEY_LEN};
use super::client::{post, request, Client};
use super::Store;

async fn serve(store: &Store) -> (TestServer, Client) {
    serve_with(store, |layer| layer).await
}

async fn serve_with(
    store: &Store,
    configure: impl FnOnce(IdempotencyLayer<Chosen>) -> IdempotencyLayer<Chosen>,
) -> (TestServer, Client) {
    let server = TestServer::start(Arc::clone(&store.backend), configure).await;
    let client = Client::new(&server.base);
    (server, client)
}

pub async fn replay_carries_the_marker_the_status_the_allowed_headers_and_the_body(store: Store) {
    let (server, client) = serve(&store).await;
    let payment = post("/payments", r#"{"amount":1999}"#).key("\"pay-1\"");

    let first = client.send(&payment).await;
    assert_eq!(first.status, 201, "{first:?}");
    assert!(!first.replayed(), "the first answer is not a replay");
    // The first caller gets the whole response, per-response headers included.
    assert_eq!(first.header("x-request-id"), Some("req-1"));
    assert_eq!(first.header("set-cookie"), Some("session=s1"));

    for _ in 0..3 {
        let retry = client.send(&payment).await;
        assert_eq!(retry.status, 201);
        assert!(retry.replayed(), "{retry:?}");
        assert_eq!(retry.body, first.body);
        assert_eq!(retry.header("content-type"), Some("application/json"));
        assert_eq!(retry.header("location"), Some("/payments/1"));
        // Not on the allow-list: never replayed to anyone else.
        assert_eq!(retry.header("x-request-id"), None);
        assert_eq!(retry.header("set-cookie"), None);
    }
    assert_eq!(server.runs("payments"), 1);
}

pub async fn quoted_and_plain_keys_are_the_same_key(store: Store) {
    let (server, client) = serve(&store).await;
    let body = r#"{"amount":5}"#;
    let first = client
        .send(&post("/payments", body).key("\"a1:b/c\""))
        .await;
    assert_eq!(first.status, 201);
    let plain = client.send(&post("/payments", body).key("a1:b/c")).await;
    assert!(plain.replayed(), "{plain:?}");
    assert_eq!(plain.body, first.body);
    assert_eq!(server.runs("payments"), 1);
}

pub async fn a_request_without_a_key_passes_through(store: Store) {
    let (server, client) = serve(&store).await;
    for run in 1..=2 {
        let reply = client.send(&post("/payments", "{}")).await;
        assert_eq!(reply.status, 201);
        assert!(!reply.replayed());
        assert_eq!(server.runs("payments"), run);
    }
}

pub async fn a_required_key_that_is_missing_is_400(store: Store) {
    let (server, client) = serve_with(&store, |layer| layer.required(true)).await;
    let reply = client.send(&post("/payments", "{}")).await;
    let problem = reply.problem(400, "key-missing");
    assert_eq!(problem["title"], "Idempotency-Key is missing");
    assert_eq!(server.runs("payments"), 0);
    // Methods the layer does not apply to need no key.
    let get = client.send(&request(Method::GET, "/payments", "")).await;
    assert_eq!(get.status, 201);
}

pub async fn malformed_and_repeated_keys_are_400(store: Store) {
    let (server, client) = serve(&store).await;
    for key in [
        "\"unterminated",
        "two words",
        "\"\"",
        "\"x\";param=1",
        "semi;colon",
    ] {
        let reply = client.send(&post("/payments", "{}").key(key)).await;
        let problem = reply.problem(400, "key-invalid");
        assert_eq!(problem["title"], "Idempotency-Key is invalid", "{key}");
    }
    let repeated = post("/payments", "{}").key("one").key("two");
    let problem = client.send(&repeated).await.problem(400, "key-invalid");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("more than once"), "{detail}");
    assert_eq!(server.runs("payments"), 0);
}

pub async fn a_key_over_the_length_limit_is_400(store: Store) {
    let (server, client) = serve(&store).await;
    let longest = "k".repeat(MAX_KEY_LEN);
    let reply = client.send(&post("/payments", "{}").key(&longest)).await;
    assert_eq!(reply.status, 201, "a key of exactly the limit is fine");
    let too_long = "k".repeat(MAX_KEY_LEN + 1);
    let reply = client.send(&post("/payments", "{}").key(&too_long)).await;
    let problem = reply.problem(400, "key-too-long");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains(&MAX_KEY_LEN.to_string()), "{detail}");
    assert_eq!(server.runs("payments"), 1);
}

pub async fn a_body_over_the_limit_is_413_and_the_handler_does_not_run(store: Store) {
    let (server, client) = serve(&store).await;
    let at_limit = "x".repeat(MAX_BODY_BYTES);
    let reply = client
        .send(&post("/payments", &at_limit).key("big-0"))
        .await;
    assert_eq!(reply.status, 201, "a body of exactly the limit is fine");

    let over = "x".repeat(MAX_BODY_BYTES + 1);
    let reply = client.send(&post("/payments", &over).key("big-1")).await;
    let problem = reply.problem(413, "body-too-large");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains(&MAX_BODY_BYTES.to_string()), "{detail}");

    // Without a Content-Length the limit stops the body while it is read.
    let status = client
        .post_chunked("/payments", "big-2", 4 * MAX_BODY_BYTES)
        .await;
    assert_eq!(status, 413);
    assert_eq!(server.runs("payments"), 1);

    // Nothing was claimed for the refused keys: fixed, they run.
    let reply = client.send(&post("/payments", "{}").key("big-1")).await;
    assert_eq!(reply.status, 201);
    assert!(!reply.replayed());
}

pub async fn the_key_with_another_body_path_or_query_is_422(store: Store) {
    let (server, client) = serve(&store).await;
    let first = client
        .send(&post("/payments", r#"{"amount":100}"#).key("k"))
        .await;
    assert_eq!(first.status, 201);
    for other in [
        post("/payments", r#"{"amount":999}"#),
        post("/payments?currency=eur", r#"{"amount":100}"#),
        post("/declined", r#"{"amount":100}"#),
        request(Method::PATCH, "/payments", r#"{"amount":100}"#),
    ] {
        let reply = client.send(&other.key("k")).await;
        let problem = reply.problem(422, "key-reused");
        assert_eq!(problem["title"], "Idempotency-Key is already used");
    }
    assert_eq!(server.runs("payments"), 1);
    assert_eq!(server.runs("declined"), 0);
    // The original request still replays.
    let retry = client
        .send(&post("/payments", r#"{"amount":100}"#).key("k"))
        .await;
    assert!(retry.replayed());
}

pub async fn configured_headers_join_the_fingerprint(store: Store) {
    let (server, client) = serve_with(&store, |layer| {
        layer.fingerprint_header(http::HeaderName::from_static("x-api-version"))
    })
    .await;
    let v1 = post("/payments", "{}")
        .key("versioned")
        .header("x-api-version", "1");
    assert_eq!(client.send(&v1).await.status, 201);
    assert!(client.send(&v1).await.replayed());
    let v2 = post("/payments", "{}")
        .key("versioned")
        .header("x-api-version", "2");
    client.send(&v2).await.problem(422, "key-reused");
    // Headers outside the fingerprint do not matter.
    let other = v1.header("x-trace", "abc");
    assert!(client.send(&other).await.replayed());
    assert_eq!(server.runs("payments"), 1);
}

pub async fn a_duplicate_while_the_first_runs_is_409_with_retry_after(store: Store) {
    let (server, client) =
        serve_with(&store, |layer| layer.retry_after(Duration::from_secs(2))).await;
    let request = post("/held", "{}").key("held-1");
    let first = tokio::spawn({
        let (client, request) = (client.clone(), request.clone());
        async move { client.send(&request).await }
    });
    server.gate().entered().await;

    let duplicate = client.send(&request).await;
    let problem = duplicate.problem(409, "request-in-progress");
    assert_eq!(
        problem["title"],
        "A request is outstanding for this Idempotency-Key"
    );
    assert_eq!(duplicate.header("retry-after"), Some("2"));

    server.gate().release();
    let first = first.await.unwrap();
    assert_eq!(first.status, 201);
    assert!(!first.replayed());
    let retry = client.send(&request).await;
    assert!(retry.replayed());
    assert_eq!(retry.body, first.body);
    assert_eq!(server.runs("held"), 1);
}

pub async fn fifty_concurrent_duplicates_run_once_and_the_others_get_409(store: Store) {
    let (server, client) = serve(&store).await;
    let request = post("/held", r#"{"amount":50}"#).key("burst");
    let (answers, mut answered) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..50 {
        let (client, request, answers) = (client.clone(), request.clone(), answers.clone());
        tokio::spawn(async move { answers.send(client.send(&request).await).unwrap() });
    }
    // The handler that claimed the key is held until every duplicate has
    // been answered, so none of them can see a finished request.
    server.gate().entered().await;
    for _ in 0..49 {
        let reply = answered.recv().await.unwrap();
        reply.problem(409, "request-in-progress");
    }
    server.gate().release();
    let winner = answered.recv().await.unwrap();
    assert_eq!(winner.status, 201);
    assert!(!winner.replayed());
    assert_eq!(server.runs("held"), 1);
    // Each of them, retried, now gets the one response.
    let retry = client.send(&request).await;
    assert!(retry.replayed());
    assert_eq!(retry.body, winner.body);
}

pub async fn fifty_concurrent_duplicates_with_wait_all_get_the_one_response(store: Store) {
    let (server, client) = serve_with(&store, |layer| layer.wait(Duration::from_secs(20))).await;
    let request = post("/held", r#"{"amount":50}"#).key("burst-wait");
    let duplicates: Vec<_> = (0..50)
        .map(|_| {
            let (client, request) = (client.clone(), request.clone());
            tokio::spawn(async move { client.send(&request).await })
        })
        .collect();
    server.gate().entered().await;
    // Give the duplicates time to reach the server and start waiting; a
    // late one simply finds the stored response, which is just as good.
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.gate().release();
    let mut replies = Vec::new();
    for duplicate in duplicates {
        replies.push(duplicate.await.unwrap());
    }
    assert!(
        replies.iter().all(|reply| reply.status == 201),
        "{replies:?}"
    );
    assert!(replies.iter().all(|reply| reply.body == replies[0].body));
    assert_eq!(replies.iter().filter(|reply| !reply.replayed()).count(), 1);
    assert_eq!(server.runs("held"), 1);
}

pub async fn a_server_error_releases_the_key_so_the_retry_runs(store: Store) {
    let (server, client) = serve(&store).await;
    let request = post("/flaky", "{}").key("flaky-1");
    let failed = client.send(&request).await;
    assert_eq!(failed.status, 500);
    assert_eq!(failed.body, "database unavailable");
    assert!(!failed.replayed());

    let retry = client.send(&request).await;
    assert_eq!(retry.status, 201, "the 500 was not stored: {retry:?}");
    assert!(!retry.replayed());
    assert_eq!(server.runs("flaky"), 2);

    let again = client.send(&request).await;
    assert!(again.replayed());
    assert_eq!(again.body, retry.body);
    assert_eq!(server.runs("flaky"), 2);
}

pub async fn client_errors_are_stored_and_replayed(store: Store) {
    let (server, client) = serve(&store).await;
    let request = post("/declined", r#"{"card":"4000"}"#).key("declined-1");
    let first = client.send(&request).await;
    assert_eq!(first.status, 402);
    let retry = client.send(&request).await;
    assert_eq!(retry.status, 402);
    assert!(retry.replayed());
    assert_eq!(retry.body, first.body);
    assert_eq!(server.runs("declined"), 1);
}

pub async fn a_429_is_not_stored(store: Store) {
    let (server, client) = serve(&store).await;
    let request = post("/throttled", "{}").key("throttled-1");
    for run in 1..=2 {
        let reply = client.send(&request).await;
        assert_eq!(reply.status, 429);
        assert!(!reply.replayed());
        assert_eq!(server.runs("throttled"), run);
    }
}

pub async fn keys_are_scoped_per_client(store: Store) {
    let (server, client) = serve(&store).await;
    let body = r#"{"amount":10}"#;
    let alice = client
        .send(&post("/payments", body).key("shared").account("alice"))
        .await;
    assert_eq!(alice.status, 201);

    // Bob sends Alice's key with Alice's request: his own run, not her receipt.
    let bob = client
        .send(&post("/payments", body).key("shared").account("bob"))
        .await;
    assert_eq!(bob.status, 201);
    assert!(!bob.replayed());
    assert_ne!(bob.body, alice.body);
    // With another body: still his own key space, so no 422 that would tell
    // him the key is in use.
    let bob_other = post("/payments", r#"{"amount":99}"#)
        .key("shared2")
        .account("bob");
    assert_eq!(client.send(&bob_other).await.status, 201);
    let alice_other = post("/payments", r#"{"amount":1}"#)
        .key("shared2")
        .account("alice");
    assert_eq!(client.send(&alice_other).await.status, 201);
    // Requests without an account are apart from every account too.
    let anonymous = client.send(&post("/payments", body).key("shared")).await;
    assert!(!anonymous.replayed());
    assert_eq!(server.runs("payments"), 5);

    // Each client's retry replays its own response.
    let alice_retry = client
        .send(&post("/payments", body).key("shared").account("alice"))
        .await;
    assert!(alice_retry.replayed());
    assert_eq!(alice_retry.body, alice.body);
    let bob_retry = client
        .send(&post("/payments", body).key("shared").account("bob"))
        .await;
    assert_eq!(bob_retry.body, bob.body);
    assert_eq!(server.runs("payments"), 5);
}

pub async fn only_post_and_patch_apply_by_default(store: Store) {
    let (server, client) = serve(&store).await;
    let patch = request(Method::PATCH, "/payments", r#"{"note":"x"}"#).key("patch-1");
    assert_eq!(client.send(&patch).await.status, 201);
    assert!(client.send(&patch).await.replayed());
    assert_eq!(server.runs("payments"), 1);
    for method in [Method::PUT, Method::DELETE, Method::GET] {
        let other = request(method.clone(), "/payments", "").key("other-1");
        for _ in 0..2 {
            let reply = client.send(&other).await;
            assert_eq!(reply.status, 201, "{method}");
            assert!(!reply.replayed(), "{method} passes through");
        }
    }
    assert_eq!(server.runs("payments"), 7);
}

pub async fn problem_types_are_about_blank_or_under_the_configured_base(store: Store) {
    let (_server, client) = serve_with(&store, |layer| layer.required(true)).await;
    let problem = client
        .send(&post("/payments", "{}"))
        .await
        .problem(400, "key-missing");
    // RFC 9457: no URI of its own, so the kind is in `title` and `code`.
    assert_eq!(problem["type"], "about:blank");

    let (_server, client) = serve_with(&store, |layer| {
        layer
            .required(true)
            .problem_type_base("https://docs.example.test/problems/")
    })
    .await;
    let problem = client
        .send(&post("/payments", "{}"))
        .await
        .problem_of_type(400, "key-missing");
    assert_eq!(
        problem["type"],
        "https://docs.example.test/problems/key-missing"
    );
}

/// Issue 14, item 2: a replay is the same representation as the first
/// answer, so a gzip body is never replayed as if it were plain JSON.
pub async fn a_replay_carries_the_representation_headers(store: Store) {
    let (server, client) = serve(&store).await;
    let request = post("/report", "{}")
        .key("report-1")
        .header("accept-encoding", "gzip");
    let first = client.send(&request).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.header("content-encoding"), Some("gzip"));
    let rows: serde_json::Value = serde_json::from_slice(&gunzip(&first.bytes)).unwrap();
    assert_eq!(rows[199]["row"], 199);

    let retry = client.send(&request).await;
    assert!(retry.replayed(), "{retry:?}");
    assert_eq!(retry.bytes, first.bytes);
    for header in [
        "content-type",
        "content-encoding",
        "vary",
        "cache-control",
        "content-disposition",
    ] {
        assert!(
            first.header(header).is_some(),
            "the first answer has {header}"
        );
        assert_eq!(retry.header(header), first.header(header), "{header}");
    }
    assert_eq!(retry.header("set-cookie"), None);
    assert_eq!(retry.header("x-request-id"), None);
    assert_eq!(server.runs("report"), 1);

    let range = post("/partial", "{}").key("partial-1");
    let first = client.send(&range).await;
    assert_eq!(first.status, 206);
    let retry = client.send(&range).await;
    assert!(retry.replayed(), "{retry:?}");
    assert_eq!(retry.status, 206);
    assert_eq!(retry.header("content-range"), Some("bytes 0-9/100"));
    assert_eq!(retry.body, first.body);
    assert_eq!(server.runs("partial"), 1);
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut plain)
        .expect("a gzip body");
    plain
}

/// A shared key space, chosen explicitly: the key and the request alone find
/// the record, whoever sends them.
pub async fn a_shared_key_space_replays_to_every_client(store: Store) {
    let server =
        TestServer::start_choosing(Arc::clone(&store.backend), |layer| layer.shared_key_space())
            .await;
    let client = Client::new(&server.base);
    let body = r#"{"amount":10}"#;
    let alice = client
        .send(&post("/payments", body).key("one-space").account("alice"))
        .await;
    assert_eq!(alice.status, 201);
    let bob = client
        .send(&post("/payments", body).key("one-space").account("bob"))
        .await;
    assert!(bob.replayed(), "{bob:?}");
    assert_eq!(bob.body, alice.body);
    let other = post("/payments", r#"{"amount":99}"#)
        .key("one-space")
        .account("bob");
    client.send(&other).await.problem(422, "key-reused");
    assert_eq!(server.runs("payments"), 1);
}

/// Issue 14, item 1: an event stream reaches its caller as it is produced
/// (the layer does not wait for its end, which may never come), and the key
/// records that the request ran: a retry, during the stream or after it, is
/// told so and does not run the handler again.
pub async fn an_event_stream_streams_through_and_a_retry_does_not_run_it_again(store: Store) {
    let (server, client) = serve(&store).await;
    let request = post("/events", "{}").key("events-1");
    let mut stream = tokio::time::timeout(STREAM_DEADLINE, client.open(&request))
        .await
        .expect("the stream's head arrives before the stream ends");
    assert_eq!(stream.status(), 200);
    assert!(stream.headers().get("idempotent-replayed").is_none());
    let first = tokio::time::timeout(STREAM_DEADLINE, stream.chunk())
        .await
        .expect("the first event arrives before the stream ends")
        .unwrap()
        .expect("an event");
    assert_eq!(&first[..], b"data: first of run 1\n\n");

    // While the stream runs, the key is already settled: no 409 in progress.
    let during = client.send(&request).await;
    let problem = during.problem(409, "response-streamed");
    assert!(during.header("retry-after").is_none(), "{during:?}");
    assert!(problem["detail"].as_str().unwrap().contains("new key"));

    server.stream_gate().release();
    let mut rest = Vec::new();
    while let Some(chunk) = stream.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"data: last\n\n");

    client
        .send(&request)
        .await
        .problem(409, "response-streamed");
    assert_eq!(server.runs("events"), 1);
}

/// A response over `max_response_bytes` streams through whole, whether its
/// length is declared or only shows as it streams, and is not run again.
pub async fn a_response_over_the_limit_streams_through_and_is_not_run_again(store: Store) {
    let (server, client) = serve(&store).await;
    for (run, mode) in [(1, "chunked"), (2, "sized")] {
        let path = format!("/download/{mode}/{LARGE_DOWNLOAD}");
        let request = post(&path, "{}").key(&format!("download-{mode}"));
        let first = client.send(&request).await;
        assert_eq!(first.status, 200, "{mode}");
        assert!(!first.replayed());
        assert_eq!(first.bytes.len(), LARGE_DOWNLOAD, "{mode}");
        let expected = (0..LARGE_DOWNLOAD).map(download_byte);
        assert!(
            first.bytes.iter().copied().eq(expected),
            "{mode}: the body arrives intact"
        );

        let retry = client.send(&request).await;
        retry.problem(409, "response-streamed");
        assert_eq!(server.runs("download"), run, "{mode}");
    }
}

/// The default limit is 1 MiB; this is past it, cheaply.
const LARGE_DOWNLOAD: usize = 1024 * 1024 + 64 * 1024;
/// How long a stream's first bytes may take to arrive before the test calls
/// the layer stuck: not a speed bound, a bound on waiting for what a
/// buffering layer would never send.
const STREAM_DEADLINE: Duration = Duration::from_secs(10);

/// The same stream on the wire: its head and first event are sent while the
/// handler still produces it, chunked, as the handler gave it.
pub async fn an_event_stream_reaches_the_wire_before_it_ends(store: Store) {
    let (server, client) = serve(&store).await;
    let mut stream = client.raw_post("/events", "events-raw").await;
    let mut seen = Vec::new();
    let until_first_event = async {
        while !String::from_utf8_lossy(&seen).contains("data: first of run 1") {
            let mut buffer = [0; 1024];
            let read = stream.read(&mut buffer).await.unwrap();
            assert_ne!(read, 0, "the connection closed before the first event");
            seen.extend_from_slice(&buffer[..read]);
        }
    };
    tokio::time::timeout(STREAM_DEADLINE, until_first_event)
        .await
        .expect("the first event reaches the wire before the stream ends");
    let head = String::from_utf8_lossy(&seen).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(!head.contains("idempotent-replayed"), "{head}");

    server.stream_gate().release();
    stream.read_to_end(&mut seen).await.unwrap();
    assert!(String::from_utf8_lossy(&seen).contains("data: last"));
    assert_eq!(server.runs("events"), 1);
}

/// `max_response_bytes` is the boundary: a response of exactly the limit is
/// stored and replayed, one byte more is streamed, declared or not.
pub async fn a_response_of_exactly_max_response_bytes_is_stored(store: Store) {
    const LIMIT: usize = 4096;
    let (server, client) = serve_with(&store, |layer| layer.max_response_bytes(LIMIT)).await;
    let at_limit = post(&format!("/download/chunked/{LIMIT}"), "{}").key("at-limit");
    let first = client.send(&at_limit).await;
    assert_eq!(first.bytes.len(), LIMIT);
    let retry = client.send(&at_limit).await;
    assert!(retry.replayed(), "{retry:?}");
    assert_eq!(retry.bytes, first.bytes);
    assert_eq!(
        retry.header("content-type"),
        Some("application/octet-stream")
    );

    for mode in ["chunked", "sized"] {
        let over = post(&format!("/download/{mode}/{}", LIMIT + 1), "{}").key(mode);
        let first = client.send(&over).await;
        assert_eq!(first.bytes.len(), LIMIT + 1, "{mode}");
        let expected = (0..=LIMIT).map(download_byte);
        assert!(first.bytes.iter().copied().eq(expected), "{mode}");
        client.send(&over).await.problem(409, "response-streamed");
    }
    assert_eq!(server.runs("download"), 3);
}

/// `stream_if` replaces the default: here every response streams, and its
/// key still records the run.
pub async fn stream_if_chooses_what_streams(store: Store) {
    let (server, client) = serve_with(&store, |layer| layer.stream_if(|_| true)).await;
    let payment = post("/payments", "{}").key("streamed-payment");
    let first = client.send(&payment).await;
    assert_eq!(first.status, 201);
    // The caller gets the whole response, per-response headers included.
    assert_eq!(first.header("set-cookie"), Some("session=s1"));
    let retry = client.send(&payment).await;
    let problem = retry.problem(409, "response-streamed");
    assert!(problem["detail"].as_str().unwrap().contains("status 201"));
    // A status the store policy releases is never recorded as streamed.
    let flaky = post("/flaky", "{}").key("streamed-flaky");
    assert_eq!(client.send(&flaky).await.status, 500);
    assert_eq!(client.send(&flaky).await.status, 201);
    assert_eq!(server.runs("payments"), 1);
    assert_eq!(server.runs("flaky"), 2);
}

/// How long the impatient clients below wait: after `/slow-body`'s head and
/// first chunk, before its second (the user's trial waited 150 ms for
/// chunks 100 ms apart; both doubled, so a slow claim on a loaded machine
/// still has the handler return before the client gives up); while `/held`
/// is still held.
const PATIENCE: Duration = Duration::from_millis(300);

/// The handler returned (its response head exists) and the layer is reading
/// its lazily produced body to store it when the client gives up: the
/// handler's effect happened, so the key is not released. The reading and
/// storing go on without the caller, and the retry replays the response.
pub async fn a_client_that_gives_up_while_the_body_is_read_gets_a_replay_on_retry(store: Store) {
    let (server, client) = serve_with(&store, |layer| layer.wait(Duration::from_secs(10))).await;
    let request = post("/slow-body", "{}").key("slow-body-1");
    client.give_up_after(&request, PATIENCE).await;
    assert_eq!(server.runs("slow-body"), 1);

    // Waits for the stored response if the first request is still storing it.
    let retry = client.send(&request).await;
    assert_eq!(retry.status, 201, "{retry:?}");
    assert!(retry.replayed(), "the handler ran once: {retry:?}");
    assert_eq!(
        retry.body,
        "chunk 0 of run 1\nchunk 1 of run 1\nchunk 2 of run 1\n"
    );
    assert_eq!(server.runs("slow-body"), 1);
}

/// The client gives up while the handler still runs (no response head yet):
/// the key is released, so the retry runs the handler.
pub async fn a_client_that_gives_up_while_the_handler_runs_frees_the_key(store: Store) {
    let (server, client) = serve_with(&store, |layer| layer.wait(Duration::from_secs(10))).await;
    let request = post("/held", "{}").key("held-gave-up");
    let impatient = tokio::spawn({
        let (client, request) = (client.clone(), request.clone());
        async move { client.give_up_after(&request, PATIENCE).await }
    });
    server.gate().entered().await;
    impatient.await.unwrap();

    let retry = tokio::spawn({
        let (client, request) = (client.clone(), request.clone());
        async move { client.send(&request).await }
    });
    // The retry's own run; the first one was dropped with its request.
    server.gate().entered().await;
    server.gate().release();
    let retry = retry.await.unwrap();
    assert_eq!(retry.status, 201, "{retry:?}");
    assert!(!retry.replayed(), "{retry:?}");
    assert_eq!(retry.body, r#"{"held":2}"#);
    assert_eq!(server.runs("held"), 2);
}

/// The client gives up while a response that turns out longer than
/// `max_response_bytes` is read: the key records that it ran and streamed,
/// as when its caller stays.
pub async fn a_client_that_gives_up_before_the_body_passes_the_limit_leaves_it_streamed(
    store: Store,
) {
    // The first chunk fits, the second (after the client gave up) does not.
    let limit = "chunk 0 of run 1\n".len() + 1;
    let (server, client) = serve_with(&store, |layer| {
        layer
            .max_response_bytes(limit)
            .wait(Duration::from_secs(10))
    })
    .await;
    let request = post("/slow-body", "{}").key("slow-body-over");
    client.give_up_after(&request, PATIENCE).await;
    let retry = client.send(&request).await;
    let problem = retry.problem(409, "response-streamed");
    assert!(problem["detail"].as_str().unwrap().contains("status 201"));
    assert_eq!(server.runs("slow-body"), 1);
}

/// The handler returned 201 and its body failed midway: the caller gets a
/// 500, and the key records that the handler ran, so a retry is told so
/// instead of running it again.
pub async fn a_body_that_fails_after_the_head_is_not_run_again(store: Store) {
    let (server, client) = serve(&store).await;
    let request = post("/failing-body", "{}").key("failing-body-1");
    let first = client.send(&request).await;
    first.problem(500, "response-unreadable");
    let retry = client.send(&request).await;
    retry.problem(500, "response-not-stored");
    assert_eq!(server.runs("failing-body"), 1);
}
