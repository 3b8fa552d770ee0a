//! One request through the layer: which requests it applies to, the key and
//! body checks, then the runtime call around the inner service.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use idempotent_core::backend::ErrorChain;

use crate::buffer::{declares_more_than, read_limited, read_response, ResponseBody};
use crate::config::Config;
use crate::detach::{Detachable, Handoff};
use crate::fingerprint::RequestFingerprint;
use crate::key;
use crate::outcome::{problem_for, Unstored};
use crate::problem::Problem;
use crate::stored::{Stored, StoredResponse};
use crate::{BoxError, MaybeBuffered};

type Answer<ResBody, E> = Result<Response<MaybeBuffered<ResBody>>, E>;

/// Answers `request`. `inner` was made ready by the caller.
pub(crate) async fn respond<S, ReqBody, ResBody>(
    config: Arc<Config>,
    inner: S,
    request: Request<ReqBody>,
) -> Answer<ResBody, S::Error>
where
    S: Service<Request<MaybeBuffered<ReqBody>>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    ReqBody: Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    if !config.methods.contains(request.method()) {
        return pass_through(inner, request).await;
    }
    let key = match key::read(request.headers(), &config.header, config.max_key_len) {
        Ok(Some(key)) => key,
        Ok(None) if config.required => {
            let header = config.header_title.clone();
            return Ok(problem_response(&config, &Problem::KeyMissing { header }));
        }
        Ok(None) => return pass_through(inner, request).await,
        Err(error) => {
            let problem = Problem::from_key_error(error, &config.header_title);
            return Ok(problem_response(&config, &problem));
        }
    };

    let (parts, body) = request.into_parts();
    let body = match read_limited(body, &parts.headers, config.max_body_bytes).await {
        Ok(body) => body,
        Err(problem) => return Ok(problem_response(&config, &problem)),
    };
    // The client is part of the key, not of the fingerprint: another client's
    // key is another record, never a 422 that would reveal the key exists.
    let client = config
        .client_id
        .as_ref()
        .and_then(|client_id| client_id(&parts));
    let fingerprint = RequestFingerprint::new(&parts, &config.fingerprint_headers, &body);
    let call = config
        .runtime()
        .prepare(&(client.as_deref(), key.as_str()), &fingerprint);
    let request = Request::from_parts(parts, MaybeBuffered::buffered(body));
    // For the logs after the call, outside the engine's span that names it.
    let record: Arc<str> = call.stored_key().unwrap_or_default().into();

    // The handler's response for this client, when it ran in this call: the
    // full response, not the stored subset, and no replay marker.
    let handoff = Handoff::new();
    let body = {
        let (config, record, handoff) = (
            Arc::clone(&config),
            Arc::clone(&record),
            Arc::clone(&handoff),
        );
        move || run_inner(inner, request, config, record, handoff)
    };
    let outcome = Detachable::new(
        call.run(body),
        Arc::clone(&handoff),
        config.scope.clone(),
        Arc::clone(&record),
    )
    .await;
    match outcome {
        Ok(stored) => match handoff.take() {
            Some(response) => Ok(response),
            None => Ok(replay(&config, &record, stored)),
        },
        Err(Unstored::NotStored(response)) => Ok(response),
        Err(Unstored::Idempotency(error)) => {
            tracing::debug!(scope = %config.scope, key = &*record, error = %ErrorChain(&error), "answered without running");
            Ok(problem_response(&config, &problem_for(&error, &config)))
        }
        Err(Unstored::Service(error)) => Err(error),
    }
}

/// The runtime body: runs the inner service and decides whether its
/// response is stored (`Ok(Response)`), streamed with the key recording the
/// run (`Ok(Streamed)`), recorded as run without a response (`Ok(Failed)`),
/// or released (`Err`). The response for this caller goes to `handoff`.
///
/// From the moment the handler returned, the call outlives its request (see
/// [`crate::detach`]), so what follows settles the key even if nobody waits.
///
/// A streamed response is settled when its head is ready, not when its body
/// ends: the engine then stores the mark and stops renewing the claim, and
/// the body flows to the caller after `run` returned, so a stream that never
/// ends holds no claim.
async fn run_inner<S, ReqBody, ResBody>(
    mut inner: S,
    request: Request<MaybeBuffered<ReqBody>>,
    config: Arc<Config>,
    record: Arc<str>,
    handoff: Arc<Handoff<Response<MaybeBuffered<ResBody>>>>,
) -> Result<Stored, Unstored<S::Error, ResBody>>
where
    S: Service<Request<MaybeBuffered<ReqBody>>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    let response = inner.call(request).await.map_err(Unstored::Service)?;
    handoff.headed();
    let (parts, body) = response.into_parts();
    let status = parts.status;
    if !(config.store_if)(status) {
        tracing::debug!(%status, "not storing this status; releasing the key");
        let body = MaybeBuffered::streaming(body);
        return Err(Unstored::NotStored(Response::from_parts(parts, body)));
    }
    let limit = config.max_response_bytes;
    if (config.stream_if)(&parts) || declares_more_than(&parts.headers, limit) {
        tracing::debug!(%status, "streaming the response unstored; the key records the run");
        handoff.give(Response::from_parts(parts, MaybeBuffered::streaming(body)));
        return Ok(Stored::Streamed {
            status: status.as_u16(),
        });
    }
    match read_response(body, limit).await {
        ResponseBody::Whole(body) => {
            let stored = StoredResponse::capture(&parts, &body, &config.stored_headers);
            handoff.give(Response::from_parts(parts, MaybeBuffered::buffered(body)));
            Ok(Stored::Response(stored))
        }
        ResponseBody::Longer(read, rest) => {
            tracing::debug!(%status, limit, "response over the limit; streaming it unstored");
            handoff.give(Response::from_parts(
                parts,
                MaybeBuffered::resumed(read, rest),
            ));
            Ok(Stored::Streamed {
                status: status.as_u16(),
            })
        }
        ResponseBody::Failed(error) => {
            // The handler ran: a retry must not run it again, so the key
            // records the run instead of being released.
            tracing::warn!(
                scope = %config.scope,
                key = &*record,
                error = %ErrorChain(&*error),
                "the response body failed; the key records that the handler ran"
            );
            handoff.give(problem_response(&config, &Problem::ResponseUnreadable));
            Ok(Stored::Failed {
                status: status.as_u16(),
            })
        }
    }
}

async fn pass_through<S, ReqBody, ResBody>(
    mut inner: S,
    request: Request<ReqBody>,
) -> Answer<ResBody, S::Error>
where
    S: Service<Request<MaybeBuffered<ReqBody>>, Response = Response<ResBody>>,
{
    let response = inner.call(request.map(MaybeBuffered::streaming)).await?;
    Ok(response.map(MaybeBuffered::streaming))
}

fn replay<B>(config: &Config, record: &str, stored: Stored) -> Response<MaybeBuffered<B>> {
    let scope = &*config.scope;
    let stored = match stored {
        Stored::Response(stored) => stored,
        Stored::Streamed { status } => {
            let header = config.header_title.clone();
            tracing::debug!(
                scope,
                key = record,
                status,
                "response was streamed; nothing to replay"
            );
            return problem_response(config, &Problem::ResponseStreamed { header, status });
        }
        Stored::Failed { status } => {
            let header = config.header_title.clone();
            tracing::debug!(
                scope,
                key = record,
                status,
                "response body failed when it ran; nothing to replay"
            );
            return problem_response(config, &Problem::ResponseNotStored { header });
        }
    };
    match stored.replay() {
        Ok(response) => response.map(MaybeBuffered::buffered),
        Err(reason) => {
            tracing::error!(
                scope,
                key = record,
                reason,
                "stored response cannot be replayed"
            );
            problem_response(config, &Problem::StoredResponseUnreadable)
        }
    }
}

fn problem_response<B>(config: &Config, problem: &Problem) -> Response<MaybeBuffered<B>> {
    problem
        .to_response(config.problem_type_base.as_deref())
        .map(MaybeBuffered::buffered)
}
