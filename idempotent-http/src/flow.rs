//! One request through the layer: which requests it applies to, the key and
//! body checks, then the runtime call around the inner service.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use tower_service::Service;

use crate::buffer::read_limited;
use crate::config::Config;
use crate::fingerprint::RequestFingerprint;
use crate::key;
use crate::outcome::{problem_for, Unstored};
use crate::problem::Problem;
use crate::stored::StoredResponse;
use crate::{BoxError, MaybeBuffered};

type Answer<ResBody, E> = Result<Response<MaybeBuffered<ResBody>>, E>;

/// Answers `request`. `inner` was made ready by the caller.
pub(crate) async fn respond<S, ReqBody, ResBody>(
    config: Arc<Config>,
    inner: S,
    request: Request<ReqBody>,
) -> Answer<ResBody, S::Error>
where
    S: Service<Request<MaybeBuffered<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: Body<Data = Bytes>,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
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

    // Set only when the handler ran in this call: this client then gets the
    // full response, not the stored subset, and no replay marker.
    let fresh = OnceLock::new();
    let outcome = call
        .run(|| run_inner(inner, request, &config, &fresh))
        .await;
    match outcome {
        Ok(stored) => match fresh.into_inner() {
            Some(response) => Ok(response.map(MaybeBuffered::buffered)),
            None => Ok(replay(&config, stored)),
        },
        Err(Unstored::NotStored(response)) => Ok(response.map(MaybeBuffered::buffered)),
        Err(Unstored::Idempotency(error)) => {
            tracing::debug!(%error, "answering a keyed request without running it");
            Ok(problem_response(&config, &problem_for(&error, &config)))
        }
        Err(Unstored::Service(error)) => Err(error),
    }
}

/// The runtime body: runs the inner service and decides, by status, whether
/// its response is stored (`Ok`) or released (`Err`).
async fn run_inner<S, ReqBody, ResBody>(
    mut inner: S,
    request: Request<MaybeBuffered<ReqBody>>,
    config: &Config,
    fresh: &OnceLock<Response<Bytes>>,
) -> Result<StoredResponse, Unstored<S::Error>>
where
    S: Service<Request<MaybeBuffered<ReqBody>>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    let response = inner.call(request).await.map_err(Unstored::Service)?;
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            let error: BoxError = error.into();
            tracing::warn!(%error, "the response body failed; releasing the key");
            let response =
                Problem::ResponseUnreadable.to_response(config.problem_type_base.as_deref());
            return Err(Unstored::NotStored(response));
        }
    };
    if !(config.store_if)(parts.status) {
        tracing::debug!(status = %parts.status, "not storing this status; releasing the key");
        return Err(Unstored::NotStored(Response::from_parts(parts, body)));
    }
    let stored = StoredResponse::capture(&parts, &body, &config.stored_headers);
    // `run` calls this body at most once, so the cell is always empty here.
    let _ = fresh.set(Response::from_parts(parts, body));
    Ok(stored)
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

fn replay<B>(config: &Config, stored: StoredResponse) -> Response<MaybeBuffered<B>> {
    match stored.replay() {
        Ok(response) => response.map(MaybeBuffered::buffered),
        Err(reason) => {
            tracing::error!(reason, "the stored response cannot be replayed");
            problem_response(config, &Problem::StoredResponseUnreadable)
        }
    }
}

fn problem_response<B>(config: &Config, problem: &Problem) -> Response<MaybeBuffered<B>> {
    problem
        .to_response(config.problem_type_base.as_deref())
        .map(MaybeBuffered::buffered)
}
