//! The tower `Layer`, `Service` and response future, and the pipeline they run.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_layer::Layer;
use tower_service::Service;

use super::body::{BodyReadError, read_body};
use super::config::GuardConfig;
use super::context::{GuardContext, GuardRejection};
use super::cors::CorsClass;
use super::resource::TypedResource;
use super::scopes::resource_grants;
use super::stages::peer_addr;
use crate::abuse::{EndpointClass, LimitKey, RateLimitDecision};
use crate::audit::{
    Actor, ActorRole, AuditRecord, AuditTime, EventKind, FhirUser, FhirUserType, HttpMethod,
    Outcome, PolicyDecision, RecordError, RequestId, ResourceId, UserId,
};
use crate::consent::{ActiveGrant, GrantStatus};
use crate::enforce::{Decision, DenyReason, Enforcer, ResponseCheck};
use crate::fhir::{FhirRequest, Interaction, PublicProblem, SearchParam, problem_response};
use crate::ids::{CategoryId, ClientId, GrantId, PatientId};
use crate::sanitize::{ParamType, ResponseKind, TypedParam, TypedValue};
use crate::token::{TokenRejection, ValidatedToken};

/// The body of every response the guard returns: it reads the handler's response whole (to
/// filter it) and answers with the bytes it decided to send.
pub type GuardBody = Full<Bytes>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The typed form of a scope string, shared between the requests of one token.
type TypedScopes = Arc<(
    Vec<crate::enforce::ResourceGrant>,
    Arc<crate::scope::ScopeSet>,
)>;

/// The elements `Enforcer::check_read` reads besides the registry's classification elements:
/// the type, the id (a Patient's own compartment), the granular-scope constraint elements and
/// the patient-reference elements of the compartment check. Everything else in a returned
/// resource is skipped (validated as JSON, not built), so a large resource costs little.
const PROBE_ELEMENTS: &[&str] = &[
    "resourceType",
    "id",
    "category",
    "code",
    "type",
    "status",
    "intent",
    "clinicalStatus",
    "verificationStatus",
    "subject",
    "patient",
    "beneficiary",
    "target",
];

/// What the response check keeps of a returned resource: [`PROBE_ELEMENTS`] and the elements
/// the registry's rules read.
fn probe_fields(registry: &crate::category::CategoryRegistry) -> Vec<String> {
    let mut fields: Vec<String> = PROBE_ELEMENTS.iter().map(|s| (*s).to_owned()).collect();
    for name in &registry.element_names {
        if !fields.contains(name) {
            fields.push(name.clone());
        }
    }
    fields
}

/// How many distinct scope strings are kept typed.
const SCOPE_CACHE_CAPACITY: usize = 1024;

pub(crate) struct Shared {
    pub(crate) config: GuardConfig,
    /// The top-level elements enforcement and classification read from a returned resource.
    probe_fields: Vec<String>,
    scopes: std::sync::RwLock<std::collections::HashMap<String, TypedScopes>>,
    semaphore: Option<Arc<Semaphore>>,
    id_prefix: String,
    counter: AtomicU64,
    /// Turns the counter into the id's second part, so that ids stay unique per instance
    /// without telling a caller how many requests others made between two of its own.
    id_permutation: IdPermutation,
    /// The length of the last body the guard serialised: where the next one's buffer starts.
    last_body_len: AtomicUsize,
    /// What a preflight for the API may allow: the methods of the interactions the sanitizer
    /// supports (no `PUT` on a read-only API).
    api_methods: Vec<Method>,
}

impl Shared {
    fn new(config: GuardConfig) -> Self {
        let mut nonce = [0u8; 6];
        let prefix =
            match ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce) {
                Ok(()) => nonce.iter().map(|b| format!("{b:02x}")).collect(),
                // Uniqueness, not secrecy, is what a correlation id needs.
                Err(_) => format!("{:012x}", config.clock.now().unix_timestamp_nanos() as u64),
            };
        let probe_fields = probe_fields(&config.registry);
        let api_methods = config.sanitizer.config().methods().iter().collect();
        Self {
            probe_fields,
            api_methods,
            scopes: std::sync::RwLock::new(std::collections::HashMap::new()),
            semaphore: config.max_concurrency.map(|n| Arc::new(Semaphore::new(n))),
            config,
            id_prefix: prefix,
            counter: AtomicU64::new(0),
            id_permutation: IdPermutation::new(),
            last_body_len: AtomicUsize::new(0),
        }
    }

    /// The scope string typed for enforcement, parsed once per distinct string.
    fn typed_scopes(&self, scope: &str) -> TypedScopes {
        if let Some(hit) = self.scopes.read().ok().and_then(|c| c.get(scope).cloned()) {
            return hit;
        }
        let (grants, set) = resource_grants(scope);
        let typed: TypedScopes = Arc::new((grants, Arc::new(set)));
        if let Ok(mut cache) = self.scopes.write() {
            if cache.len() >= SCOPE_CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(scope.to_owned(), Arc::clone(&typed));
        }
        typed
    }

    fn next_request_id(&self) -> Option<RequestId> {
        let n = self
            .id_permutation
            .apply(self.counter.fetch_add(1, Ordering::Relaxed));
        // `fg-` ‖ 12 hex digits ‖ `-` ‖ 16 hex digits, written on the stack so that the id's
        // one allocation is the shared string itself.
        let mut buf = [0u8; 36];
        let prefix = self.id_prefix.as_bytes();
        let head = 3 + prefix.len() + 1;
        if head > 16 {
            return None;
        }
        buf[..3].copy_from_slice(b"fg-");
        buf[3..3 + prefix.len()].copy_from_slice(prefix);
        buf[head - 1] = b'-';
        let mut digits = &mut buf[head..];
        let room = digits.len();
        std::io::Write::write_fmt(&mut digits, format_args!("{n:016x}")).ok()?;
        let len = room - digits.len();
        let id = std::str::from_utf8(&buf[..head + len]).ok()?;
        RequestId::new(id).ok()
    }
}

/// A keyed permutation of 64-bit numbers: a four-round Feistel network whose round function is
/// SipHash (std's keyed hasher) under keys drawn from the operating system at start. Being a
/// permutation, distinct counters give distinct ids; being keyed, consecutive ids look
/// unrelated, so an id does not reveal the API's request volume (a counter in plain sight lets
/// anyone without a token measure other users' traffic). Correlation ids need no more: they
/// are not credentials, and the audit chain, not the id, is what makes records tamper-evident.
struct IdPermutation {
    keys: std::hash::RandomState,
}

impl IdPermutation {
    fn new() -> Self {
        Self {
            keys: std::hash::RandomState::new(),
        }
    }

    fn apply(&self, n: u64) -> u64 {
        use std::hash::BuildHasher;
        let (mut left, mut right) = ((n >> 32) as u32, n as u32);
        for round in 0u8..4 {
            let mixed = self.keys.hash_one((round, right)) as u32;
            (left, right) = (right, left ^ mixed);
        }
        (u64::from(left) << 32) | u64::from(right)
    }
}

/// The guard as a tower [`Layer`]: wraps the host's FHIR handler in the whole pipeline
/// (sanitize → token → grant → enforce → handler → filter → audit).
///
/// Cheap to clone; build it once from a [`GuardConfig`].
#[must_use]
#[derive(Clone)]
pub struct GuardLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for GuardLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardLayer")
            .field("config", &self.shared.config)
            .finish()
    }
}

impl GuardLayer {
    /// A layer enforcing `config`.
    pub fn new(config: GuardConfig) -> Self {
        Self {
            shared: Arc::new(Shared::new(config)),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &GuardConfig {
        &self.shared.config
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = GuardService<S>;

    fn layer(&self, inner: S) -> GuardService<S> {
        GuardService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The guard around the host's service `S` (see [`GuardLayer`]).
///
/// `S` receives the request with its body read into a [`Full`] body, the URI carrying the
/// narrowing parameters and a [`GuardContext`] in its extensions.
pub struct GuardService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: Clone> Clone for GuardService<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for GuardService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardService")
            .field("inner", &self.inner)
            .field("config", &self.shared.config)
            .finish()
    }
}

impl<S> GuardService<S> {
    /// The guard around `inner`.
    pub fn new(inner: S, config: GuardConfig) -> Self {
        Self {
            inner,
            shared: Arc::new(Shared::new(config)),
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The configuration.
    pub fn config(&self) -> &GuardConfig {
        &self.shared.config
    }
}

impl<S, B, RB> Service<Request<B>> for GuardService<S>
where
    S: Service<Request<GuardBody>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    RB: Body + Send + 'static,
    RB::Data: Send,
    RB::Error: Into<BoxError>,
{
    type Response = Response<GuardBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let head = req.method() == Method::HEAD;
        let shared = Arc::clone(&self.shared);
        let (parts, body) = req.into_parts();
        // Everything up to the handler is synchronous and runs here, and so does the call of
        // the handler when the request has no body: the future boxed below only holds the
        // handler's future and what checking its answer needs (a future that held the whole
        // pipeline would be a few kilobytes, allocated and copied on every request).
        let trail = match shared.begin(&parts) {
            Ok(trail) => trail,
            Err(answer) => return ResponseFuture::ready(answer, head),
        };
        let state: BoxedAnswer<S::Error> = if body.is_end_stream() {
            match shared.prepare(trail, parts, Bytes::new()) {
                Step::Answered(answer) => return ResponseFuture::ready(answer, head),
                Step::Handle(request, pending) => {
                    Box::pin(handle(shared, self.inner.call(request), pending))
                }
                Step::Public(public) => {
                    let inner = self.take_ready_inner();
                    Box::pin(async move {
                        let (trail, parts, bytes) = *public;
                        serve_public(&shared, trail, inner, parts, bytes).await
                    })
                }
            }
        } else {
            let mut inner = self.take_ready_inner();
            Box::pin(async move {
                let max_body = shared.config.sanitizer.config().limits.max_body_bytes;
                let bytes = match read_request_body(body, &parts.headers, max_body).await {
                    Ok(bytes) => bytes,
                    Err(rejection) => return Ok(shared.reject(trail, rejection)),
                };
                match shared.prepare(trail, parts, bytes) {
                    Step::Answered(answer) => Ok(answer),
                    Step::Handle(request, pending) => {
                        let answer = inner.call(request);
                        handle(shared, answer, pending).await
                    }
                    Step::Public(public) => {
                        let (trail, parts, bytes) = *public;
                        serve_public(&shared, trail, inner, parts, bytes).await
                    }
                }
            })
        };
        ResponseFuture {
            state: Answer::Pending(state),
            head,
        }
    }
}

impl<S: Clone> GuardService<S> {
    /// The instance that was polled ready, to call later (after the request body is read);
    /// a clone stays for the next request.
    fn take_ready_inner(&mut self) -> S {
        let clone = self.inner.clone();
        std::mem::replace(&mut self.inner, clone)
    }
}

type BoxedAnswer<E> = Pin<Box<dyn Future<Output = Result<Response<GuardBody>, E>> + Send>>;

/// The response future of [`GuardService`].
pub struct ResponseFuture<E> {
    state: Answer<E>,
    /// A HEAD request: the answer is the GET's without the body.
    head: bool,
}

enum Answer<E> {
    /// Answered before the handler (a refusal, a preflight): no allocation.
    Ready(Option<Response<GuardBody>>),
    /// Waiting for the handler (or the request body).
    Pending(BoxedAnswer<E>),
}

impl<E> ResponseFuture<E> {
    fn ready(response: Response<GuardBody>, head: bool) -> Self {
        Self {
            state: Answer::Ready(Some(response)),
            head,
        }
    }
}

impl<E> fmt::Debug for ResponseFuture<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<E> Future for ResponseFuture<E> {
    type Output = Result<Response<GuardBody>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let answer = match &mut this.state {
            // Polled again after completing: a pending future that never resolves, as a
            // completed `Ready` would panic instead.
            Answer::Ready(response) => match response.take() {
                Some(response) => Ok(response),
                None => return Poll::Pending,
            },
            Answer::Pending(future) => match future.as_mut().poll(cx) {
                Poll::Ready(answer) => answer,
                Poll::Pending => return Poll::Pending,
            },
        };
        Poll::Ready(answer.map(|response| {
            if this.head {
                without_body(response)
            } else {
                response
            }
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// The pipeline
// ---------------------------------------------------------------------------------------------

/// What the audit record of a request will say, filled in as the request advances.
struct Trail {
    time: OffsetDateTime,
    method: HttpMethod,
    source: Option<IpAddr>,
    origin: Option<HeaderValue>,
    cors: CorsClass,
    request_id: Option<RequestId>,
    request: Option<Arc<FhirRequest>>,
    client: Option<ClientId>,
    grant: Option<GrantId>,
    patient: Option<PatientId>,
    actor: Option<Actor>,
    categories: BTreeSet<CategoryId>,
    decision: Option<PolicyDecision>,
    /// The concurrency limit's permit, held until the request's record is written.
    _permit: Option<OwnedSemaphorePermit>,
}

/// Where the synchronous part of the pipeline ([`Shared::prepare`]) left a request.
enum Step {
    /// Answered by the guard (a refusal).
    Answered(Response<GuardBody>),
    /// A public path (`/metadata`, discovery): the handler answers, under public headers.
    /// Boxed: rare, and the largest.
    Public(Box<(Trail, Parts, Bytes)>),
    /// Authorized and narrowed: the handler is asked, and its answer checked.
    Handle(Request<GuardBody>, Box<Pending>),
}

/// What checking the handler's answer needs, kept while the handler runs. Boxed: a small
/// allocation rather than a larger future.
struct Pending {
    trail: Trail,
    check: ResponseCheck,
    /// The parameters enforcement added, to take out of a Bundle's links again.
    narrowing: Vec<SearchParam>,
    /// What the enforcer is rebuilt from.
    typed: TypedScopes,
    approved: Approved,
    patient: Option<PatientId>,
}

/// The request's enforcer, built from what [`Shared::authorize`] found.
fn enforcer<'a>(
    config: &'a GuardConfig,
    typed: &'a TypedScopes,
    approved: &'a Approved,
    patient: Option<PatientId>,
) -> Enforcer<'a> {
    enforcer_with(&config.registry, config.enforce, typed, approved, patient)
}

fn enforcer_with<'a>(
    registry: &'a crate::category::CategoryRegistry,
    enforce: crate::enforce::EnforceConfig,
    typed: &'a TypedScopes,
    approved: &'a Approved,
    patient: Option<PatientId>,
) -> Enforcer<'a> {
    let enforcer = Enforcer::with_granted(
        registry,
        typed.0.as_slice(),
        patient,
        Cow::Borrowed(approved.set()),
        enforce,
    );
    match approved {
        // A consent grant is one patient's: no scope of its tokens reaches past her.
        Approved::Grant(_) => enforcer.confined_to_patient(),
        Approved::All(_) => enforcer,
    }
}

/// Waits for the handler, reads what it returned and answers with what the grant shows.
async fn handle<F, RB, E>(
    shared: Arc<Shared>,
    answer: F,
    pending: Box<Pending>,
) -> Result<Response<GuardBody>, E>
where
    F: Future<Output = Result<Response<RB>, E>>,
    RB: Body,
    RB::Error: Into<BoxError>,
{
    let response = answer.await?;
    let (mut rparts, rbody) = response.into_parts();
    if rparts.status.is_client_error() || rparts.status.is_server_error() {
        // The body is replaced, so it is not read.
        return Ok(shared.handler_error(pending, rparts.status));
    }
    let body = match rparts.extensions.remove::<TypedResource>() {
        Some(TypedResource(value)) => {
            // What is sent is written from this value: the body is dropped unread.
            drop(rbody);
            if rparts.headers.contains_key(header::CONTENT_ENCODING) {
                return Ok(shared.reject(pending.trail, GuardRejection::UpstreamResponse));
            }
            Returned::Value(value)
        }
        None => match Limited::new(rbody, shared.config.max_response_bytes)
            .collect()
            .await
        {
            Ok(collected) => Returned::Bytes(collected.to_bytes()),
            Err(_) => return Ok(shared.reject(pending.trail, GuardRejection::UpstreamResponse)),
        },
    };
    Ok(shared.respond(*pending, rparts, body))
}

impl Shared {
    /// The request's trail, or the answer when it is refused (or is a CORS preflight) before
    /// its body is read.
    // The answer is smaller than the trail it replaces: boxing it would spare nothing.
    #[allow(clippy::result_large_err)]
    fn begin(&self, parts: &Parts) -> Result<Trail, Response<GuardBody>> {
        let config = &self.config;
        let now = config.clock.now();
        let mut trail = Trail {
            time: now,
            method: HttpMethod::from(&parts.method),
            source: peer_addr(&parts.extensions),
            origin: parts.headers.get(header::ORIGIN).cloned(),
            cors: if is_public(config, parts.uri.path()) {
                CorsClass::Public
            } else {
                CorsClass::Registered
            },
            request_id: self.next_request_id(),
            request: None,
            client: None,
            grant: None,
            patient: None,
            actor: None,
            categories: BTreeSet::new(),
            decision: None,
            _permit: None,
        };

        if let Some(semaphore) = &self.semaphore {
            match Arc::clone(semaphore).try_acquire_owned() {
                Ok(permit) => trail._permit = Some(permit),
                Err(_) => return Err(self.reject(trail, GuardRejection::Overloaded)),
            }
        }

        // CORS preflight: answered here, never by the handler.
        if parts.method == Method::OPTIONS
            && parts
                .headers
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return Err(self.preflight(trail, parts));
        }

        // Rate limit by address before spending anything on the request.
        if let (Some(limiter), Some(ip)) = (&config.rate_limiter, trail.source) {
            if let Err(rejection) = check_limit(
                limiter.as_ref(),
                EndpointClass::FhirRead,
                &[LimitKey::Address(ip)],
                now,
            ) {
                return Err(self.reject(trail, rejection));
            }
        }
        Ok(trail)
    }

    /// Sanitize, token, grant, enforce: the request for the handler, or the guard's answer.
    fn prepare(&self, mut trail: Trail, parts: Parts, bytes: Bytes) -> Step {
        if trail.cors == CorsClass::Public {
            return Step::Public(Box::new((trail, parts, bytes)));
        }
        let config = &self.config;
        let now = trail.time;

        // 1. Sanitize; 2–3. token and grant. A method the path does not accept is refused
        //    whoever asks (405 and `Allow` describe the path, not the caller); any other
        //    refusal of a request without valid credentials is the 401 and its challenge
        //    (RFC 6750 §3), so that it learns nothing of what the API accepts.
        let target = parts.uri.path_and_query().map_or("/", PathAndQuery::as_str);
        let sanitized = config
            .sanitizer
            .parse_parts(&parts.method, target, &parts.headers, &bytes);
        if let Err(e) = &sanitized {
            if e.allowed_methods().is_some() {
                let e = e.clone();
                return Step::Answered(self.reject(trail, GuardRejection::Sanitize(e)));
            }
        }
        let authorized = match self.authorize(&mut trail, &parts.headers, now) {
            Ok(a) => a,
            Err(rejection) => {
                // The record still says what was asked, when the request can say it.
                trail.request = sanitized.ok().map(|s| Arc::new(s.request));
                return Step::Answered(self.reject(trail, rejection));
            }
        };
        let sanitized = match sanitized {
            Ok(s) => s,
            Err(e) => {
                return Step::Answered(self.reject(trail, GuardRejection::Sanitize(e)));
            }
        };
        let max_count = config.sanitizer.config().limits.max_count;
        let capped = counts_at(&sanitized.request, &sanitized.typed, max_count);
        let post_search = parts.method == Method::POST
            && matches!(
                sanitized.request.interaction,
                Interaction::SearchType | Interaction::SearchSystem
            );
        let request = sanitized.request;

        // 4. Enforce: decide, narrow.
        let decision = enforcer(
            config,
            &authorized.typed,
            &authorized.categories,
            authorized.patient.clone(),
        )
        .decide(&request);
        let (narrowing, check) = match decision {
            Decision::Allow { response } => (Vec::new(), response),
            Decision::Narrow { add, response } => (add, response),
            Decision::Deny(reason) => {
                trail.request = Some(Arc::new(request));
                return Step::Answered(self.reject(trail, GuardRejection::Denied(reason)));
            }
        };
        // The handler gets the narrowed request; the audit record keeps the one the client
        // sent (the same one, shared, when nothing was added).
        let sent = Arc::new(request);
        let narrowed = if narrowing.is_empty() {
            Arc::clone(&sent)
        } else {
            let mut narrowed = FhirRequest::clone(&sent);
            narrowed.params.extend(narrowing.iter().cloned());
            Arc::new(narrowed)
        };
        trail.request = Some(sent);
        let mut parts = parts;
        // The sanitizer capped a `_count` above the maximum in the typed request; the raw
        // query (and a POST search's form) the handler may read must say the same.
        let Some(bytes) = cap_counts(&mut parts, &capped, max_count, post_search, bytes) else {
            return Step::Answered(self.reject(trail, GuardRejection::NarrowingFailed));
        };
        if !narrowing.is_empty() {
            match append_query(&parts.uri, &narrowing) {
                Some(uri) => parts.uri = uri,
                None => {
                    return Step::Answered(self.reject(trail, GuardRejection::NarrowingFailed));
                }
            }
        }
        let Authorized {
            client_id,
            patient,
            categories: approved,
            typed,
            fhir_user,
        } = authorized;
        let searches = matches!(
            narrowed.interaction,
            Interaction::SearchType
                | Interaction::SearchCompartment
                | Interaction::SearchSystem
                | Interaction::Operation(_)
        );
        parts.extensions.insert(GuardContext {
            patient: patient.clone(),
            client_id,
            grant_id: trail.grant.clone(),
            categories: approved.set().clone(),
            scopes: Arc::clone(&typed.1),
            request: narrowed,
            // The handler's Bundle links repeat the narrowing; it is taken out of them again.
            narrowing: narrowing.clone(),
            fhir_user,
            request_id: trail.request_id.clone(),
        });
        if searches {
            parts.extensions.insert(Visibility {
                registry: Arc::clone(&config.registry),
                enforce: config.enforce,
                typed: Arc::clone(&typed),
                approved: approved.clone(),
                patient: patient.clone(),
            });
        }
        head_as_get(&mut parts);
        Step::Handle(
            Request::from_parts(parts, Full::new(bytes)),
            Box::new(Pending {
                trail,
                check,
                narrowing,
                typed,
                approved,
                patient,
            }),
        )
    }

    /// The answer to a request whose handler answered with success: what it returned,
    /// checked (and narrowed) against the grant, with the guard's headers and one audit
    /// record.
    fn respond(
        &self,
        pending: Pending,
        rparts: http::response::Parts,
        body: Returned,
    ) -> Response<GuardBody> {
        let Pending {
            mut trail,
            check,
            narrowing,
            typed,
            approved,
            patient,
        } = pending;
        let config = &self.config;
        let mut rparts = rparts;
        let body = if rparts.status.is_success() {
            // Checking a returned resource reads only the request's type, the same before and
            // after narrowing.
            let sent = trail.request.take();
            let enforcer = enforcer(config, &typed, &approved, patient);
            let filtered = match &sent {
                Some(request) => {
                    self.filter(&mut trail, &enforcer, check, request, &narrowing, body)
                }
                None => Err(GuardRejection::UpstreamResponse),
            };
            trail.request = sent;
            match filtered {
                Ok(body) => body,
                Err(rejection) => return self.reject(trail, rejection),
            }
        } else {
            trail.decision = Some(PolicyDecision::Permit);
            match body.into_bytes(self) {
                Ok(body) => body,
                Err(rejection) => return self.reject(trail, rejection),
            }
        };

        // 7. Headers, anomaly watch, audit.
        rparts.headers.remove(header::CONTENT_LENGTH);
        let mut response = Response::from_parts(rparts, Full::new(body));
        self.decorate(&trail, &mut response, ResponseKind::Phi);
        if let (Some(detector), Some(grant)) = (&config.anomaly, &trail.grant) {
            let signals = detector.observe(grant, &trail.categories, trail.time);
            if !signals.is_empty() {
                // The spike is a security event of its own, beside the request's record; like
                // any record it must be kept, or nothing is served.
                if !self.record_anomaly(&trail) {
                    return self.audit_failed(&trail);
                }
                if let Some(hook) = &config.anomaly_hook {
                    for signal in &signals {
                        hook.on_anomaly(signal);
                    }
                }
            }
        }
        self.finish(trail, EventKind::RestAccess, Outcome::Success, response)
    }
}

/// What a handler returned: bytes, or (through [`FhirJson`](super::FhirJson)) the resource
/// itself.
enum Returned {
    Bytes(Bytes),
    /// Shared with nothing once the handler's body is dropped, so a Bundle to filter is taken
    /// over without a copy.
    Value(Arc<Value>),
}

impl Returned {
    /// The bytes to send; a value is serialised, under the same size limit as a handler's
    /// bytes.
    fn into_bytes(self, shared: &Shared) -> Result<Bytes, GuardRejection> {
        match self {
            Returned::Bytes(bytes) => Ok(bytes),
            Returned::Value(value) => shared.serialize(&value),
        }
    }
}

/// The largest buffer a serialisation starts with, however large the last body was.
const BODY_HINT_MAX: usize = 64 * 1024;

impl Shared {
    /// `value` as the bytes to send, at most `max_response_bytes` of them. The buffer starts
    /// a little above the last body's length (a server's answers are of like sizes), which
    /// spares the doublings an empty `Vec` grows through.
    fn serialize(&self, value: &Value) -> Result<Bytes, GuardRejection> {
        let hint = self
            .last_body_len
            .load(Ordering::Relaxed)
            .clamp(256, BODY_HINT_MAX);
        let mut bytes = Vec::with_capacity(hint + hint / 8);
        serde_json::to_writer(&mut bytes, value).map_err(|_| GuardRejection::UpstreamResponse)?;
        self.last_body_len.store(bytes.len(), Ordering::Relaxed);
        if bytes.len() > self.config.max_response_bytes {
            return Err(GuardRejection::UpstreamResponse);
        }
        Ok(Bytes::from(bytes))
    }
}

/// A `/metadata` or discovery request: no token; the handler answers; public headers.
async fn serve_public<S, RB>(
    shared: &Shared,
    mut trail: Trail,
    mut inner: S,
    mut parts: Parts,
    bytes: Bytes,
) -> Result<Response<GuardBody>, S::Error>
where
    S: Service<Request<GuardBody>, Response = Response<RB>>,
    RB: Body,
    RB::Error: Into<BoxError>,
{
    let config = &shared.config;
    if parts.method != Method::GET && parts.method != Method::HEAD {
        return Ok(shared.reject(trail, GuardRejection::MethodNotAllowed));
    }
    if let Some(target) = parts.uri.path_and_query() {
        // `/metadata` is a FHIR interaction: type it for the audit record (and refuse what the
        // sanitizer refuses).
        if target.path().ends_with("/metadata") || target.path() == "metadata" {
            match config.sanitizer.parse_parts(
                &parts.method,
                target.as_str(),
                &parts.headers,
                &bytes,
            ) {
                Ok(s) => trail.request = Some(Arc::new(s.request)),
                Err(e) => return Ok(shared.reject(trail, GuardRejection::Sanitize(e))),
            }
        } else if target.as_str().len() > config.sanitizer.config().limits.max_url_len {
            return Ok(shared.reject(
                trail,
                GuardRejection::Sanitize(crate::sanitize::SanitizeError::UrlTooLong {
                    len: target.as_str().len(),
                    max: config.sanitizer.config().limits.max_url_len,
                }),
            ));
        }
    }
    head_as_get(&mut parts);
    let response = inner
        .call(Request::from_parts(parts, Full::new(bytes)))
        .await?;
    let (mut rparts, rbody) = response.into_parts();
    let body = match Limited::new(rbody, config.max_response_bytes)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(shared.reject(trail, GuardRejection::UpstreamResponse)),
    };
    if rparts.status.is_client_error() || rparts.status.is_server_error() {
        let problem = problem_for_status(rparts.status);
        let outcome = handler_error_outcome(rparts.status);
        let mut response = into_guard_body(problem_response(problem));
        shared.decorate(&trail, &mut response, ResponseKind::Public);
        return Ok(shared.finish(trail, EventKind::RestAccess, outcome, response));
    }
    rparts.headers.remove(header::CONTENT_LENGTH);
    let mut response = Response::from_parts(rparts, Full::new(body));
    shared.decorate(&trail, &mut response, ResponseKind::Public);
    trail.decision = Some(PolicyDecision::Permit);
    Ok(shared.finish(trail, EventKind::RestAccess, Outcome::Success, response))
}

/// The token, the grant and the scopes of an authorized caller.
struct Authorized {
    client_id: ClientId,
    patient: Option<PatientId>,
    categories: Approved,
    /// The token's scopes, typed once per distinct scope string and shared.
    typed: TypedScopes,
    fhir_user: Option<String>,
}

/// The categories a request may disclose: the grant's own set, lent to the enforcer without a
/// copy, or (a grantless token, where allowed) every declared category.
#[derive(Clone)]
enum Approved {
    Grant(Arc<ActiveGrant>),
    All(Arc<BTreeSet<CategoryId>>),
}

/// The visibility rule of a search the guard let through, in the request's extensions next
/// to the [`GuardContext`] (searches, compartment searches and `$everything` only).
///
/// The guard narrows a search to what the grant shows where one parameter can say it (every
/// granted category of the type on the same element). Where none can (vital signs by
/// `category` with smoking status by `code`, both in Observation), the handler runs the
/// broader search and the guard filters each page; the page's positions then depend on the
/// hidden matches: an empty page with a `next` link, or a visible match pushed to a later
/// offset, tells that hidden matches exist. A handler that pages over its matches itself
/// closes that by keeping only what [`Visibility::shows`] accepts *before* it counts and
/// slices them. The guard still filters what comes back, whatever the handler did.
#[derive(Clone)]
pub struct Visibility {
    registry: Arc<crate::category::CategoryRegistry>,
    enforce: crate::enforce::EnforceConfig,
    typed: TypedScopes,
    approved: Approved,
    patient: Option<PatientId>,
}

impl fmt::Debug for Visibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No patient id: a Debug print may reach a log.
        f.debug_struct("Visibility")
            .field("categories", self.approved.set())
            .finish_non_exhaustive()
    }
}

impl Visibility {
    /// The request's enforcer (the same the guard checks the response with).
    pub fn enforcer(&self) -> Enforcer<'_> {
        enforcer_with(
            &self.registry,
            self.enforce,
            &self.typed,
            &self.approved,
            self.patient.clone(),
        )
    }

    /// Whether `resource` may be returned as a search match: a search scope on its type whose
    /// constraints it meets, the patient's compartment, a granted category.
    pub fn shows(&self, resource: &Value) -> bool {
        self.enforcer()
            .visible(resource, crate::enforce::Need::Search)
            .is_ok()
    }
}

impl Approved {
    fn set(&self) -> &BTreeSet<CategoryId> {
        match self {
            Approved::Grant(grant) => &grant.categories,
            Approved::All(set) => set,
        }
    }
}

impl Shared {
    fn authorize(
        &self,
        trail: &mut Trail,
        headers: &HeaderMap,
        now: OffsetDateTime,
    ) -> Result<Authorized, GuardRejection> {
        let config = &self.config;
        let ValidatedToken {
            claims,
            grant: validated_grant,
        } = config
            .validator
            .validate_headers(headers, now)
            .map_err(GuardRejection::Token)?;
        trail.client = Some(claims.client_id.clone());
        trail.grant.clone_from(&claims.grant_id);
        trail.patient.clone_from(&claims.patient);

        // The grant, asked again of the configured source (the validator may be the host's),
        // unless the validator just asked that very source.
        let same_source = config
            .validator
            .grant_source()
            .is_some_and(|source| Arc::ptr_eq(source, &config.grants));
        let status = |grant_id| match validated_grant {
            Some(grant) if same_source => GrantStatus::Active(grant),
            _ => config.grants.grant_status(grant_id, now),
        };
        let (patient, categories) = match &claims.grant_id {
            Some(grant_id) => match status(grant_id) {
                GrantStatus::Active(grant) => {
                    if grant.client_id != claims.client_id
                        || claims.patient.as_ref().is_some_and(|p| *p != grant.patient)
                    {
                        return Err(GuardRejection::Token(TokenRejection::GrantMismatch));
                    }
                    (Some(grant.patient.clone()), Approved::Grant(grant))
                }
                GrantStatus::Expired => {
                    return Err(GuardRejection::Token(TokenRejection::GrantExpired));
                }
                GrantStatus::Revoked => {
                    return Err(GuardRejection::Token(TokenRejection::GrantRevoked));
                }
                GrantStatus::Unknown => {
                    return Err(GuardRejection::Token(TokenRejection::GrantUnknown));
                }
            },
            None if config.allow_grantless => (
                claims.patient.clone(),
                Approved::All(Arc::new(
                    config
                        .registry
                        .categories()
                        .iter()
                        .map(|c| c.id.clone())
                        .collect(),
                )),
            ),
            None => return Err(GuardRejection::GrantlessToken),
        };
        trail.patient.clone_from(&patient);
        trail.actor = Some(actor(
            &claims.sub,
            claims.fhir_user.as_deref(),
            patient.as_ref(),
            claims.grant_id.is_some(),
        ));

        // Rate limits by identity.
        if let Some(limiter) = &config.rate_limiter {
            let mut keys = Vec::with_capacity(3);
            keys.push(LimitKey::Client(claims.client_id.clone()));
            if let Some(g) = &claims.grant_id {
                keys.push(LimitKey::Grant(g.clone()));
            }
            if let Some(p) = &patient {
                keys.push(LimitKey::Patient(p.clone()));
            }
            check_limit(limiter.as_ref(), EndpointClass::FhirRead, &keys, now)?;
        }

        let typed = self.typed_scopes(&claims.scope);
        Ok(Authorized {
            client_id: claims.client_id.clone(),
            patient,
            categories,
            typed,
            fhir_user: claims.fhir_user.clone(),
        })
    }

    /// Checks a successful handler response against the grant; returns the bytes to send.
    fn filter(
        &self,
        trail: &mut Trail,
        enforcer: &Enforcer<'_>,
        check: ResponseCheck,
        request: &FhirRequest,
        narrowing: &[SearchParam],
        body: Returned,
    ) -> Result<Bytes, GuardRejection> {
        let narrowed = !narrowing.is_empty();
        let registry = &self.config.registry;
        match check {
            ResponseCheck::Nothing => {
                trail.decision = Some(PolicyDecision::Permit);
                body.into_bytes(self)
            }
            ResponseCheck::Resource => {
                let unchanged = if narrowed {
                    PolicyDecision::Narrowed { withheld: 0 }
                } else {
                    PolicyDecision::Permit
                };
                // Visible as a whole; what it names outside the grant is removed before it is
                // sent. Bytes are read twice without being built (the pruned probe for the
                // check, a scan for what redaction would remove) and parsed only when
                // something must go.
                let mut value = match body {
                    Returned::Bytes(bytes) => {
                        let resource = crate::json::probe(&bytes, &self.probe_fields)
                            .ok_or(GuardRejection::ResponseDenied(DenyReason::Unclassifiable))?;
                        enforcer
                            .check_read_view_into(request, &resource, &mut trail.categories)
                            .map_err(GuardRejection::ResponseDenied)?;
                        let resource_type = crate::json::JsonView::get(&resource, "resourceType")
                            .and_then(crate::json::JsonView::as_str)
                            .unwrap_or("");
                        if !enforcer.needs_redaction_bytes(&bytes, resource_type) {
                            trail.decision = Some(unchanged);
                            return Ok(bytes);
                        }
                        let value: Value = serde_json::from_slice(&bytes).map_err(|_| {
                            GuardRejection::ResponseDenied(DenyReason::Unclassifiable)
                        })?;
                        if !enforcer.needs_redaction(&value) {
                            trail.decision = Some(unchanged);
                            return Ok(bytes);
                        }
                        value
                    }
                    Returned::Value(value) => {
                        enforcer
                            .check_read_view_into(request, &*value, &mut trail.categories)
                            .map_err(GuardRejection::ResponseDenied)?;
                        if !enforcer.needs_redaction(&value) {
                            trail.decision = Some(unchanged);
                            return self.serialize(&value);
                        }
                        Arc::unwrap_or_clone(value)
                    }
                };
                enforcer.redact(&mut value);
                trail.decision = Some(PolicyDecision::Narrowed { withheld: 0 });
                self.serialize(&value)
            }
            ResponseCheck::Bundle => {
                let mut bundle: Value = match body {
                    Returned::Bytes(bytes) => serde_json::from_slice(&bytes)
                        .map_err(|_| GuardRejection::UpstreamResponse)?,
                    Returned::Value(value) => Arc::unwrap_or_clone(value),
                };
                if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
                    return Err(GuardRejection::UpstreamResponse);
                }
                let report = enforcer.filter_search_bundle(request, &mut bundle);
                if narrowed {
                    strip_narrowing_from_links(&mut bundle, narrowing);
                }
                // A page of `_count=0` holds no entries, so the filter cannot know how many
                // of the server's matches the grant shows: no total rather than a wrong one
                // (the server's would count what the grant hides).
                let count_only = request
                    .params_named("_count")
                    .any(|p| p.values.iter().any(|v| v.parse::<u32>() == Ok(0)));
                if count_only {
                    if let Some(obj) = bundle.as_object_mut() {
                        obj.remove("total");
                    }
                }
                if let Some(Value::Array(entries)) = bundle.get("entry") {
                    for entry in entries {
                        if let Some(resource) = entry.get("resource") {
                            if let Ok(class) = registry.classify(resource) {
                                trail.categories.extend(class.categories().iter().cloned());
                            }
                        }
                    }
                }
                let withheld = u32::try_from(report.dropped).unwrap_or(u32::MAX);
                trail.decision = Some(if narrowed || withheld > 0 || report.redacted > 0 {
                    PolicyDecision::Narrowed { withheld }
                } else {
                    PolicyDecision::Permit
                });
                self.serialize(&bundle)
            }
        }
    }

    /// The handler answered with an error status: replace its body (it could name hidden
    /// data) with the generic outcome; a missing resource looks exactly like a denied one.
    fn handler_error(&self, pending: Box<Pending>, status: StatusCode) -> Response<GuardBody> {
        let Pending {
            mut trail,
            check,
            typed,
            approved,
            patient,
            ..
        } = *pending;
        let problem = if (status == StatusCode::NOT_FOUND || status == StatusCode::GONE)
            && check == ResponseCheck::Resource
        {
            let enforcer = enforcer(&self.config, &typed, &approved, patient);
            if enforcer.missing_outcome().status == StatusCode::FORBIDDEN {
                PublicProblem::Forbidden
            } else {
                PublicProblem::NotFound
            }
        } else {
            problem_for_status(status)
        };
        trail.decision = Some(PolicyDecision::Permit);
        let outcome = handler_error_outcome(status);
        let mut response = into_guard_body(problem_response(problem));
        self.decorate(&trail, &mut response, ResponseKind::Phi);
        self.finish(trail, EventKind::RestAccess, outcome, response)
    }

    /// Answers a refusal: generic body, typed rejection in the extensions, one audit record.
    fn reject(&self, mut trail: Trail, rejection: GuardRejection) -> Response<GuardBody> {
        let mut response = self.rejection_response(&rejection);
        let kind = if trail.cors == CorsClass::Public {
            ResponseKind::Public
        } else {
            ResponseKind::Phi
        };
        self.decorate(&trail, &mut response, kind);
        let outcome = rejection.audit_outcome();
        let event = match (&rejection, outcome) {
            (GuardRejection::RateLimited { .. }, _) => EventKind::RateLimited,
            (_, Outcome::Denied(_)) => {
                trail.decision = Some(PolicyDecision::Deny);
                EventKind::RequestDenied
            }
            _ => EventKind::RestAccess,
        };
        if matches!(rejection, GuardRejection::RateLimited { .. }) {
            trail.decision = Some(PolicyDecision::Deny);
        }
        response.extensions_mut().insert(rejection);
        self.finish(trail, event, outcome, response)
    }

    fn rejection_response(&self, rejection: &GuardRejection) -> Response<GuardBody> {
        let problem = rejection.problem(self.config.enforce.concealment);
        let mut response = into_guard_body(problem_response(problem));
        let headers = response.headers_mut();
        match rejection {
            GuardRejection::Token(t) => {
                headers.insert(header::WWW_AUTHENTICATE, t.www_authenticate());
            }
            GuardRejection::Sanitize(e) => {
                // RFC 9110 §15.5.6: a 405 lists what the path accepts.
                if let Some(allow) = e.allowed_methods() {
                    headers.insert(header::ALLOW, allow.header_value());
                }
            }
            // RFC 6750 §3.1. Without `scope=`: what would be enough depends on the grant's
            // categories and granular constraints, which one scope string cannot say. A
            // concealed refusal (404, or 403 under `Concealment::Forbidden`) never gets here
            // (`insufficient_scope` excludes them): it must stay byte-identical to a missing
            // resource.
            r if r.insufficient_scope() && problem == PublicProblem::Forbidden => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="fhir", error="insufficient_scope""#),
                );
            }
            GuardRejection::MethodNotAllowed => {
                // Only public paths (`/metadata`, discovery) answer this: they are read-only.
                headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            }
            GuardRejection::GrantlessToken => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    TokenRejection::GrantUnknown.www_authenticate(),
                );
            }
            GuardRejection::RateLimited {
                retry_after_seconds,
                ..
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_seconds));
            }
            _ => {}
        }
        response
            .extensions_mut()
            .insert(crate::fhir::RejectionReason {
                component: "middleware",
                code: rejection.code(),
                detail: rejection.to_string(),
                public: problem,
            });
        response
    }

    fn preflight(&self, mut trail: Trail, parts: &Parts) -> Response<GuardBody> {
        let methods: &[Method] = match trail.cors {
            CorsClass::Public => &[Method::GET, Method::HEAD],
            CorsClass::Registered => &self.api_methods,
        };
        let answer =
            self.config.cors.as_ref().and_then(|cors| {
                cors.preflight(trail.cors, &parts.method, &parts.headers, methods)
            });
        match answer {
            Some(response) if response.status() == StatusCode::NO_CONTENT => {
                let mut response = into_guard_body(response);
                self.config
                    .headers
                    .apply(response.headers_mut(), ResponseKind::Public);
                self.set_request_id(&trail, &mut response);
                trail.decision = Some(PolicyDecision::Permit);
                self.finish(trail, EventKind::RestAccess, Outcome::Success, response)
            }
            _ => {
                // No CORS headers: the browser refuses the actual request.
                trail.origin = None;
                self.reject(trail, GuardRejection::OriginNotAllowed)
            }
        }
    }

    /// Security headers, CORS and the request id.
    fn decorate(&self, trail: &Trail, response: &mut Response<GuardBody>, kind: ResponseKind) {
        // One growth to the next size class (12 entries) holds a handler's few headers and the
        // six to eight added here; asking for more doubles the allocation for nothing.
        response.headers_mut().reserve(8);
        self.config.headers.apply(response.headers_mut(), kind);
        if let Some(cors) = &self.config.cors {
            cors.apply(trail.cors, trail.origin.as_ref(), response.headers_mut());
        }
        self.set_request_id(trail, response);
    }

    fn set_request_id(&self, trail: &Trail, response: &mut Response<GuardBody>) {
        if let Some(id) = &trail.request_id {
            if let Ok(v) = HeaderValue::from_str(id.as_str()) {
                response
                    .headers_mut()
                    .insert(header::HeaderName::from_static("x-request-id"), v);
            }
        }
    }

    /// Writes the one audit record of the request; if it cannot be kept, the response is
    /// withheld (500) — no request is served unaudited.
    fn finish(
        &self,
        mut trail: Trail,
        event: EventKind,
        outcome: Outcome,
        response: Response<GuardBody>,
    ) -> Response<GuardBody> {
        let kept = self
            .audit_record(&mut trail, event, outcome)
            .ok()
            .is_some_and(|record| self.config.audit.record(record).is_ok());
        if kept {
            return response;
        }
        self.audit_failed(&trail)
    }

    /// The answer when an audit record could not be kept: nothing is served (fail closed).
    fn audit_failed(&self, trail: &Trail) -> Response<GuardBody> {
        let rejection = GuardRejection::AuditFailed;
        let mut failed = self.rejection_response(&rejection);
        self.decorate(trail, &mut failed, ResponseKind::Phi);
        failed.extensions_mut().insert(rejection);
        failed
    }

    /// Records an [`EventKind::AnomalyDetected`] security event for the request's grant,
    /// client and patient. False when the record could not be kept.
    fn record_anomaly(&self, trail: &Trail) -> bool {
        let Ok(time) = AuditTime::new(trail.time) else {
            return false;
        };
        let mut record = AuditRecord::new(time, EventKind::AnomalyDetected, Outcome::Success);
        record.request_id.clone_from(&trail.request_id);
        record.client.clone_from(&trail.client);
        record.grant.clone_from(&trail.grant);
        record.patient.clone_from(&trail.patient);
        record.source = trail.source;
        record.method = Some(trail.method);
        record.categories.clone_from(&trail.categories);
        self.config.audit.record(record).is_ok()
    }

    /// The request's record; moves what it needs out of `trail` (only CORS and the request id
    /// are used afterwards).
    fn audit_record(
        &self,
        trail: &mut Trail,
        event: EventKind,
        outcome: Outcome,
    ) -> Result<AuditRecord, RecordError> {
        let time = AuditTime::new(trail.time)?;
        let mut record = match &trail.request {
            Some(request) => AuditRecord::for_request(time, request, outcome)
                .unwrap_or_else(|_| AuditRecord::new(time, event, outcome)),
            None => AuditRecord::new(time, event, outcome),
        };
        record.event = event;
        record.request_id.clone_from(&trail.request_id);
        record.actor = trail.actor.take();
        if trail.client.is_some() {
            record.purpose = self.config.purpose;
        }
        record.client = trail.client.take();
        record.grant = trail.grant.take();
        record.source = trail.source;
        record.method = Some(trail.method);
        if trail.patient.is_some() {
            record.patient = trail.patient.take();
        }
        record.categories = std::mem::take(&mut trail.categories);
        record.decision = trail.decision;
        Ok(record)
    }
}

fn check_limit(
    limiter: &dyn super::stages::RateLimit,
    class: EndpointClass,
    keys: &[LimitKey],
    now: OffsetDateTime,
) -> Result<(), GuardRejection> {
    match limiter.check(class, keys, now) {
        Ok(RateLimitDecision::Allowed) => Ok(()),
        Ok(decision @ RateLimitDecision::Limited { .. }) => {
            let retry_after_seconds = decision.retry_after_seconds().unwrap_or(1);
            let (class, key) = match decision {
                RateLimitDecision::Limited { class, key, .. } => (class, key.kind()),
                RateLimitDecision::Allowed => (class, crate::abuse::KeyKind::Address),
            };
            Err(GuardRejection::RateLimited {
                class,
                key,
                retry_after_seconds,
            })
        }
        Err(_) => Err(GuardRejection::RateLimitUnavailable),
    }
}

fn is_public(config: &GuardConfig, path: &str) -> bool {
    let Some(rest) = path.strip_prefix(config.base_path.as_str()) else {
        return false;
    };
    let Some(rest) = rest.strip_prefix('/') else {
        return false;
    };
    config.public_paths.iter().any(|p| p == rest)
}

async fn read_request_body<B>(
    body: B,
    headers: &HeaderMap,
    max: usize,
) -> Result<Bytes, GuardRejection>
where
    B: Body,
{
    read_body(body, headers, max).await.map_err(|e| match e {
        BodyReadError::TooLarge => GuardRejection::BodyTooLarge,
        BodyReadError::Unreadable => GuardRejection::BodyUnreadable,
    })
}

/// The handler answers HEAD as GET: the guard needs the body to check it (a hidden resource
/// must answer HEAD exactly as GET does, 404 and all), and a router's HEAD route may drop the
/// body before the guard sees it (axum's `get` routes do). The audit record keeps HEAD, and
/// [`without_body`] drops the body on the way out.
fn head_as_get(parts: &mut Parts) {
    if parts.method == Method::HEAD {
        parts.method = Method::GET;
    }
}

/// A HEAD answer: the GET's status and headers, with `Content-Length` the length of the body
/// a GET would have received (RFC 9110 §9.3.2, §8.6), and no body. Checked like a GET's,
/// the body is dropped here and never leaves the guard.
fn without_body(response: Response<GuardBody>) -> Response<GuardBody> {
    let (mut parts, body) = response.into_parts();
    // No `Content-Length` on a 1xx, a 204 or a 304.
    let status = parts.status;
    let sized = !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED);
    if let (true, Some(len)) = (sized, body.size_hint().exact()) {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    Response::from_parts(parts, Full::new(Bytes::new()))
}

/// The names of the `_count`-typed parameters at `max`: those the sanitizer may have capped.
/// Empty (no allocation) for the usual request.
fn counts_at(request: &FhirRequest, typed: &[TypedParam], max: u32) -> Vec<String> {
    request
        .params
        .iter()
        .zip(typed)
        .filter(|(_, t)| t.ty == ParamType::Count && t.values.contains(&TypedValue::Count(max)))
        .map(|(p, _)| p.name.clone())
        .collect()
}

/// Rewrites the raw `name=value` pairs of `names` above `cap` to `cap`, in the URI's query and
/// (for a POST search) the form body: what the sanitizer did to the typed request, for a
/// handler that reads the raw request. `None` if the URI could not be rebuilt.
fn cap_counts(
    parts: &mut Parts,
    names: &[String],
    cap: u32,
    post_search: bool,
    body: Bytes,
) -> Option<Bytes> {
    if names.is_empty() {
        return Some(body);
    }
    if let Some(query) = parts.uri.query().and_then(|q| cap_pairs(q, names, cap)) {
        let pq = format!("{}?{query}", parts.uri.path());
        let mut uri_parts = parts.uri.clone().into_parts();
        uri_parts.path_and_query = Some(PathAndQuery::try_from(pq).ok()?);
        parts.uri = Uri::from_parts(uri_parts).ok()?;
    }
    let form = if post_search {
        std::str::from_utf8(&body)
            .ok()
            .and_then(|f| cap_pairs(f, names, cap))
    } else {
        None
    };
    Some(match form {
        Some(form) => {
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(form.len()));
            Bytes::from(form)
        }
        None => body,
    })
}

/// `pairs` (`a=1&_count=900`) with the values of `names` above `cap` written as `cap`; `None`
/// when nothing changed.
fn cap_pairs(pairs: &str, names: &[String], cap: u32) -> Option<String> {
    let mut changed = false;
    let mut out = String::with_capacity(pairs.len());
    for (i, pair) in pairs.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let over = names.iter().any(|n| n == name)
            && crate::sanitize::decode(value)
                .is_ok_and(|v| v.len() > 9 || v.parse::<u32>().is_ok_and(|n| n > cap));
        if over {
            out.push_str(name);
            out.push('=');
            out.push_str(&cap.to_string());
            changed = true;
        } else {
            out.push_str(pair);
        }
    }
    changed.then_some(out)
}

/// Characters left as they are in an added query value; everything else is percent-encoded.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `uri` with `params` appended to its query (values FHIR-escaped, then percent-encoded).
fn append_query(uri: &Uri, params: &[SearchParam]) -> Option<Uri> {
    let mut added = String::new();
    for p in params {
        if !added.is_empty() {
            added.push('&');
        }
        added.push_str(&utf8_percent_encode(&p.name, QUERY_VALUE).to_string());
        if let Some(m) = &p.modifier {
            added.push(':');
            added.push_str(&utf8_percent_encode(m, QUERY_VALUE).to_string());
        }
        added.push('=');
        for (i, v) in p.values.iter().enumerate() {
            if i > 0 {
                added.push(',');
            }
            let escaped = v.replace('\\', "\\\\").replace(',', "\\,");
            added.push_str(&utf8_percent_encode(&escaped, QUERY_VALUE).to_string());
        }
    }
    let path = uri.path();
    let pq = match uri.query() {
        Some(q) if !q.is_empty() => format!("{path}?{q}&{added}"),
        _ => format!("{path}?{added}"),
    };
    let mut uri_parts = uri.clone().into_parts();
    uri_parts.path_and_query = Some(PathAndQuery::try_from(pq).ok()?);
    Uri::from_parts(uri_parts).ok()
}

/// Takes the guard's narrowing out of a Bundle's `self`, `next` and `previous` links, so they
/// show the search as the client asked it (plus the handler's paging parameters): the
/// narrowing can list dozens of codings, and a `next` link carrying it could exceed the
/// parameter limit the client is held to when it follows the link. Following it is narrowed
/// again, to the same result.
fn strip_narrowing_from_links(bundle: &mut Value, narrowing: &[SearchParam]) {
    let Some(Value::Array(links)) = bundle.get_mut("link") else {
        return;
    };
    for link in links {
        if let Some(Value::String(url)) = link.get_mut("url") {
            if let Some(stripped) = strip_narrowing(url, narrowing) {
                *url = stripped;
            }
        }
    }
}

/// `url` without one query pair for each narrowing parameter (compared decoded, so a handler
/// that re-encodes its links still matches); `None` when nothing was removed.
fn strip_narrowing(url: &str, narrowing: &[SearchParam]) -> Option<String> {
    let (base, rest) = url.split_once('?')?;
    let (query, fragment) = match rest.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (rest, None),
    };
    let wanted: Vec<(String, String)> = narrowing
        .iter()
        .map(|p| {
            let name = match &p.modifier {
                Some(m) => format!("{}:{m}", p.name),
                None => p.name.clone(),
            };
            let value = p
                .values
                .iter()
                .map(|v| v.replace('\\', "\\\\").replace(',', "\\,"))
                .collect::<Vec<_>>()
                .join(",");
            (name, value)
        })
        .collect();
    let mut used = vec![false; wanted.len()];
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .map(|c| c.into_owned())
            .ok()
    };
    let mut kept: Vec<&str> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = decode(name).zip(decode(value));
        let hit = decoded.and_then(|(n, v)| {
            wanted
                .iter()
                .enumerate()
                .position(|(i, (wn, wv))| !used[i] && *wn == n && *wv == v)
        });
        match hit {
            Some(i) => used[i] = true,
            None => kept.push(pair),
        }
    }
    if !used.iter().any(|u| *u) {
        return None;
    }
    let mut out = base.to_owned();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    Some(out)
}

fn problem_for_status(status: StatusCode) -> PublicProblem {
    match status {
        StatusCode::UNAUTHORIZED => PublicProblem::Unauthorized,
        StatusCode::FORBIDDEN => PublicProblem::Forbidden,
        StatusCode::NOT_FOUND | StatusCode::GONE => PublicProblem::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => PublicProblem::MethodNotAllowed,
        StatusCode::REQUEST_TIMEOUT => PublicProblem::RequestTimeout,
        StatusCode::PAYLOAD_TOO_LARGE => PublicProblem::PayloadTooLarge,
        StatusCode::URI_TOO_LONG => PublicProblem::UriTooLong,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => PublicProblem::UnsupportedMediaType,
        StatusCode::TOO_MANY_REQUESTS => PublicProblem::TooManyRequests,
        StatusCode::SERVICE_UNAVAILABLE => PublicProblem::Unavailable,
        s if s.is_server_error() => PublicProblem::Internal,
        _ => PublicProblem::BadRequest,
    }
}

fn handler_error_outcome(status: StatusCode) -> Outcome {
    if status.is_server_error() {
        Outcome::Error(crate::audit::ErrorKind::Upstream)
    } else {
        // The access was permitted; the handler found nothing to disclose.
        Outcome::Success
    }
}

fn into_guard_body(response: Response<Vec<u8>>) -> Response<GuardBody> {
    response.map(|b| Full::new(Bytes::from(b)))
}

/// Who acted, from the token.
fn actor(
    sub: &str,
    fhir_user: Option<&str>,
    patient: Option<&PatientId>,
    has_grant: bool,
) -> Actor {
    let parsed = fhir_user.and_then(|r| {
        let (ty, id) = r.rsplit_once('/')?;
        let ty = ty.rsplit('/').next()?;
        let ty = match ty {
            "Patient" => FhirUserType::Patient,
            "Practitioner" => FhirUserType::Practitioner,
            "PractitionerRole" => FhirUserType::PractitionerRole,
            "RelatedPerson" => FhirUserType::RelatedPerson,
            "Person" => FhirUserType::Person,
            _ => return None,
        };
        Some(FhirUser::new(ty, ResourceId::new(id).ok()?))
    });
    let role = match parsed.as_ref().map(|u| u.resource_type) {
        Some(FhirUserType::Patient | FhirUserType::Person) => ActorRole::Patient,
        Some(FhirUserType::RelatedPerson) => ActorRole::Representative,
        Some(FhirUserType::Practitioner | FhirUserType::PractitionerRole) => {
            ActorRole::Practitioner
        }
        None if has_grant || patient.is_some() => ActorRole::Patient,
        None => ActorRole::System,
    };
    let mut actor = Actor::new(role);
    actor.user = UserId::new(sub).ok();
    actor.fhir_user = parsed;
    actor
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_unique_and_do_not_count_requests() {
        let permutation = IdPermutation::new();
        let ids: Vec<u64> = (0..10_000).map(|n| permutation.apply(n)).collect();
        let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        // Consecutive requests get ids with no visible step between them.
        let steps_of_one = ids
            .windows(2)
            .filter(|w| w[1].wrapping_sub(w[0]) == 1)
            .count();
        assert_eq!(steps_of_one, 0);
        let increasing = ids.windows(2).filter(|w| w[1] > w[0]).count();
        assert!((4_000..6_000).contains(&increasing), "{increasing}");
        // Another instance draws other keys.
        assert_ne!(IdPermutation::new().apply(0), permutation.apply(0));
    }

    /// A patient and a category list with a comma inside a value.
    fn sample_narrowing() -> Vec<SearchParam> {
        vec![
            SearchParam {
                name: "patient".into(),
                modifier: None,
                values: vec!["Patient/355".into()],
            },
            SearchParam {
                name: "category".into(),
                modifier: None,
                values: vec!["http://x.org/cs|vital-signs".into(), "a,b".into()],
            },
        ]
    }

    #[test]
    fn narrowing_is_appended_escaped() {
        let uri: Uri = "/fhir/Observation?code=1234-5".parse().unwrap();
        let add = sample_narrowing();
        let out = append_query(&uri, &add).unwrap();
        assert_eq!(
            out.to_string(),
            "/fhir/Observation?code=1234-5&patient=Patient%2F355&category=http%3A%2F%2Fx.org%2Fcs%7Cvital-signs,a%5C%2Cb"
        );
        let bare: Uri = "/fhir/Observation".parse().unwrap();
        assert_eq!(
            append_query(&bare, &add[..1]).unwrap().to_string(),
            "/fhir/Observation?patient=Patient%2F355"
        );
    }

    #[test]
    fn links_lose_the_narrowing_and_keep_paging() {
        let add = sample_narrowing();
        let uri: Uri = "/fhir/Observation?code=1234-5".parse().unwrap();
        let narrowed = append_query(&uri, &add).unwrap().to_string();
        let next = format!("https://ehr.example{narrowed}&_offset=20");
        assert_eq!(
            strip_narrowing(&next, &add).as_deref(),
            Some("https://ehr.example/fhir/Observation?code=1234-5&_offset=20")
        );
        // Re-encoded by the handler (`|` raw, `/` raw): still recognised.
        let reencoded = "https://e/fhir/Observation?patient=Patient/355&category=http://x.org/cs|vital-signs,a%5C,b";
        assert_eq!(
            strip_narrowing(reencoded, &add).as_deref(),
            Some("https://e/fhir/Observation")
        );
        // The client's own `category` stays; only the guard's copy goes.
        let both = format!(
            "https://e/fhir/Observation?category=laboratory&{}",
            &narrowed[narrowed.find("patient").unwrap()..]
        );
        assert_eq!(
            strip_narrowing(&both, &add).as_deref(),
            Some("https://e/fhir/Observation?category=laboratory")
        );
        assert_eq!(
            strip_narrowing("https://e/fhir/Observation?code=1", &add),
            None
        );
        let mut bundle = serde_json::json!({"resourceType": "Bundle",
            "link": [{"relation": "self", "url": format!("https://e{narrowed}")}]});
        strip_narrowing_from_links(&mut bundle, &add);
        assert_eq!(
            bundle["link"][0]["url"],
            "https://e/fhir/Observation?code=1234-5"
        );
    }

    #[test]
    fn capped_counts_are_rewritten_in_the_raw_query() {
        let names = vec!["_count".to_owned()];
        assert_eq!(
            cap_pairs("patient=355&_count=1000&code=x", &names, 500).as_deref(),
            Some("patient=355&_count=500&code=x")
        );
        assert_eq!(
            cap_pairs("_count=%31%30%30%30", &names, 500).as_deref(),
            Some("_count=500")
        );
        assert_eq!(
            cap_pairs("_count=99999999999999", &names, 500).as_deref(),
            Some("_count=500")
        );
        // At or under the cap, or another parameter: nothing to rewrite.
        assert_eq!(cap_pairs("_count=500&x_count=9000", &names, 500), None);
        let mut parts = Request::get("/fhir/Observation?_count=900&patient=355")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let body = cap_counts(&mut parts, &names, 500, false, Bytes::new()).unwrap();
        assert!(body.is_empty());
        assert_eq!(
            parts.uri.to_string(),
            "/fhir/Observation?_count=500&patient=355"
        );
        // A POST search's form too, with its length.
        let mut post = Request::post("/fhir/Observation/_search")
            .header(header::CONTENT_LENGTH, "25")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let form = cap_counts(
            &mut post,
            &names,
            500,
            true,
            Bytes::from_static(b"patient=355&_count=100000"),
        )
        .unwrap();
        assert_eq!(&form[..], b"patient=355&_count=500");
        assert_eq!(post.headers[header::CONTENT_LENGTH], "22");
    }

    #[test]
    fn head_answers_keep_the_length_and_drop_the_body() {
        let mut response = Response::new(Full::new(Bytes::from_static(b"{\"id\":\"1\"}")));
        response
            .headers_mut()
            .insert(header::ETAG, HeaderValue::from_static("W/\"1\""));
        let head = without_body(response);
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(head.headers()[header::CONTENT_LENGTH], "10");
        assert_eq!(head.headers()[header::ETAG], "W/\"1\"");
        assert_eq!(head.body().size_hint().exact(), Some(0));
        let mut empty = Response::new(Full::new(Bytes::new()));
        *empty.status_mut() = StatusCode::NO_CONTENT;
        assert!(
            without_body(empty)
                .headers()
                .get(header::CONTENT_LENGTH)
                .is_none()
        );
        let mut parts = Request::head("/fhir/Patient/1")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        head_as_get(&mut parts);
        assert_eq!(parts.method, Method::GET);
    }

    /// The pruned probe decides exactly as the whole resource: same classification, same
    /// `check_read` outcome under several grants, for every resource of both fixture patients.
    #[test]
    fn pruned_probe_decides_like_the_whole_resource() {
        use crate::category::CategoryRegistry;
        use crate::enforce::EnforceConfig;
        use crate::fhir::{Interaction, ResourceType};

        let registry = CategoryRegistry::default_registry();
        let fields = probe_fields(&registry);
        let all: Vec<CategoryId> = registry.categories().iter().map(|c| c.id.clone()).collect();
        let vitals = vec![CategoryId::new("vital-signs").unwrap()];
        let cases: Vec<(&str, &str, Vec<CategoryId>)> = vec![
            ("355", "patient/*.rs", all.clone()),
            (
                "355",
                "patient/Observation.rs patient/Patient.r",
                vitals.clone(),
            ),
            (
                "355",
                "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs",
                all.clone(),
            ),
            ("85", "patient/*.rs", all),
            ("85", "patient/Condition.rs?clinical-status=active", vitals),
        ];
        /// Bundle-internal `urn:uuid:` references as the server's `Type/id` ones.
        fn localise(v: &mut Value, ids: &std::collections::HashMap<String, String>) {
            match v {
                Value::Object(map) => {
                    for (k, item) in map.iter_mut() {
                        match item {
                            Value::String(r) if k == "reference" => {
                                if let Some(local) = ids.get(r.as_str()) {
                                    *r = local.clone();
                                }
                            }
                            _ => localise(item, ids),
                        }
                    }
                }
                Value::Array(items) => items.iter_mut().for_each(|i| localise(i, ids)),
                _ => {}
            }
        }
        let (mut compared, mut allowed, mut redacted) = (0, 0, 0);
        for bundle in [
            include_str!("../../tests/fixtures/uscore_bundle_patient_355.json"),
            include_str!("../../tests/fixtures/uscore_bundle_patient_85.json"),
        ] {
            let mut bundle: Value = serde_json::from_str(bundle).unwrap();
            let ids: std::collections::HashMap<String, String> = bundle["entry"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    let r = &e["resource"];
                    let local = format!(
                        "{}/{}",
                        r["resourceType"].as_str().unwrap(),
                        r["id"].as_str().unwrap()
                    );
                    (e["fullUrl"].as_str().unwrap().to_owned(), local)
                })
                .collect();
            localise(&mut bundle, &ids);
            for entry in bundle["entry"].as_array().unwrap() {
                let whole = &entry["resource"];
                let bytes = serde_json::to_vec(whole).unwrap();
                let pruned = crate::json::probe(&bytes, &fields).unwrap();
                let ty = whole["resourceType"].as_str().unwrap();
                assert_eq!(
                    registry.classify_typed(ty, whole),
                    registry.classify_typed(ty, &pruned),
                    "{ty}"
                );
                let mut request = FhirRequest::new(Interaction::Read);
                request.resource_type = ResourceType::new(ty);
                for (patient, scope, categories) in &cases {
                    let (grants, _) = resource_grants(scope);
                    let enforcer = Enforcer::new(
                        &registry,
                        grants.as_slice(),
                        Some(PatientId::new(*patient).unwrap()),
                        categories.iter().cloned(),
                        EnforceConfig::default(),
                    );
                    let decision = enforcer.check_read(&request, whole);
                    // One classification for the check and the audit record: the same
                    // as checking and classifying the whole resource apart.
                    assert_eq!(
                        enforcer.check_read_view(&request, &pruned),
                        decision.clone().map(|()| registry.classify(whole).unwrap()),
                        "{ty} under {scope}"
                    );
                    // The guard's form, which adds the ids to its audit trail, agrees.
                    let mut disclosed = std::collections::BTreeSet::new();
                    let into = enforcer.check_read_view_into(&request, &pruned, &mut disclosed);
                    assert_eq!(into, decision.clone(), "{ty} under {scope}");
                    let expected: std::collections::BTreeSet<_> = match &decision {
                        Ok(()) => registry.classify(whole).unwrap().categories().to_vec(),
                        Err(_) => Vec::new(),
                    }
                    .into_iter()
                    .collect();
                    assert_eq!(disclosed, expected, "{ty} under {scope}");
                    // The byte scan answers as the parsed value (exactly, unless the type has
                    // withheld elements or the resource contains others, where it may only
                    // say "parse it"), also with a name added to the subject reference.
                    let mut named = whole.clone();
                    if let Some(subject) = named.get_mut("subject").and_then(Value::as_object_mut) {
                        subject.insert("display".into(), Value::from("Amy Shaw"));
                    }
                    for resource in [whole, &named] {
                        let bytes = serde_json::to_vec(resource).unwrap();
                        let scanned = enforcer.needs_redaction_bytes(&bytes, ty);
                        let needed = enforcer.needs_redaction(resource);
                        let exact = registry.withheld().iter().all(|w| w.resource_type != ty)
                            && resource.get("contained").is_none();
                        if exact {
                            assert_eq!(scanned, needed, "{ty} under {scope}");
                        } else {
                            assert!(scanned || !needed, "{ty} under {scope}");
                        }
                        redacted += usize::from(needed);
                    }
                    compared += 1;
                    allowed += usize::from(decision.is_ok());
                }
            }
        }
        // Both outcomes are exercised.
        assert!(
            compared > 100 && allowed > 20 && allowed < compared,
            "{allowed}/{compared}"
        );
        assert!(
            redacted > 20 && redacted < 2 * compared,
            "{redacted}/{compared}"
        );
    }

    #[test]
    fn actors_from_claims() {
        let p = PatientId::new("355").unwrap();
        let a = actor(
            "user-1",
            Some("https://ehr/fhir/Patient/355"),
            Some(&p),
            true,
        );
        assert_eq!(a.role, ActorRole::Patient);
        assert_eq!(a.fhir_user.unwrap().reference(), "Patient/355");
        let r = actor("user-2", Some("RelatedPerson/9"), Some(&p), true);
        assert_eq!(r.role, ActorRole::Representative);
        let s = actor("backend", None, None, false);
        assert_eq!(s.role, ActorRole::System);
        assert!(actor("a@b", None, Some(&p), true).user.is_none());
    }
}
