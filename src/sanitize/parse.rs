//! `http::Request` → [`SanitizedRequest`].
//!
//! The checks run cheapest-first and every byte is looked at before anything is decoded:
//! limits, then the raw characters of the target, then the path (which never needs
//! percent-encoding, so any `%` in it is refused), then the route, then each parameter
//! (strict percent-decoding, UTF-8, control characters, double encoding, name, modifier,
//! typed value, duplicates), then the body (size, media type, JSON depth, shape).

use std::borrow::Cow;

use http::{HeaderMap, Method, Request, header};

use crate::fhir::{FhirRequest, Interaction, ResourceType, SearchParam};

use super::config::{ConfigError, Handling, InteractionCode, SanitizerConfig};
use super::error::{SanitizeError, safe_name};
use super::methods::AllowedMethods;
use super::table::{ParamDef, ParamType, TypeParams};
use super::value::{AllowedTypes, TypedValue, ValueCtx, bytes, is_valid_id};

/// A `_has:Type:reference:param` clause, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HasClause {
    /// The type that points at the searched type.
    pub resource_type: ResourceType,
    /// Its reference parameter that points back.
    pub reference: String,
    /// The parameter on `resource_type` the value applies to.
    pub param: String,
}

/// The typed form of one [`SearchParam`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedParam {
    /// The declared type of the parameter (for `_has`, of its inner parameter).
    pub ty: ParamType,
    /// One typed value per comma alternative, in order.
    pub values: TypedValues,
    /// For `_has`, the parsed clause.
    pub has: Option<HasClause>,
}

/// The typed alternatives of one parameter, in order; a slice through `Deref`.
///
/// Most parameters have exactly one value, which is held inline: typing it costs no
/// allocation of its own (several alternatives are held in a `Vec`).
#[derive(Clone)]
pub struct TypedValues(TypedValuesRepr);

#[derive(Clone)]
enum TypedValuesRepr {
    One(TypedValue),
    Many(Vec<TypedValue>),
}

impl TypedValues {
    /// The values as a slice.
    pub fn as_slice(&self) -> &[TypedValue] {
        match &self.0 {
            TypedValuesRepr::One(v) => std::slice::from_ref(v),
            TypedValuesRepr::Many(vs) => vs,
        }
    }

    /// The values as a `Vec`.
    pub fn into_vec(self) -> Vec<TypedValue> {
        match self.0 {
            TypedValuesRepr::One(v) => vec![v],
            TypedValuesRepr::Many(vs) => vs,
        }
    }
}

impl From<TypedValue> for TypedValues {
    fn from(v: TypedValue) -> Self {
        Self(TypedValuesRepr::One(v))
    }
}

impl From<Vec<TypedValue>> for TypedValues {
    fn from(mut vs: Vec<TypedValue>) -> Self {
        if vs.len() == 1 {
            if let Some(v) = vs.pop() {
                return Self(TypedValuesRepr::One(v));
            }
        }
        Self(TypedValuesRepr::Many(vs))
    }
}

impl std::ops::Deref for TypedValues {
    type Target = [TypedValue];
    fn deref(&self) -> &[TypedValue] {
        self.as_slice()
    }
}

impl<'a> IntoIterator for &'a TypedValues {
    type Item = &'a TypedValue;
    type IntoIter = std::slice::Iter<'a, TypedValue>;
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl std::fmt::Debug for TypedValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl PartialEq for TypedValues {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for TypedValues {}

impl PartialEq<[TypedValue]> for TypedValues {
    fn eq(&self, other: &[TypedValue]) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<Vec<TypedValue>> for TypedValues {
    fn eq(&self, other: &Vec<TypedValue>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

/// A request that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct SanitizedRequest {
    /// The typed request (shared vocabulary: enforcement and audit consume it).
    pub request: FhirRequest,
    /// The typed values, one entry per `request.params` entry, same order.
    pub typed: Vec<TypedParam>,
    /// Parameters stripped under lenient handling, with why (for the audit record).
    pub stripped: Vec<SanitizeError>,
    /// The handling that applied.
    pub handling: Handling,
    /// The parsed JSON body of a create/update/patch/batch/operation, if any.
    pub body: Option<serde_json::Value>,
}

/// The request sanitizer. Build once from a [`SanitizerConfig`]; `parse` is `&self` and
/// allocation-light.
#[derive(Debug, Clone)]
pub struct Sanitizer {
    config: SanitizerConfig,
    /// `config.allowed_types`, compiled for the request path.
    allowed: AllowedTypes,
}

/// Which parameters an interaction accepts.
enum ParamScope<'a> {
    None,
    /// Capabilities: only `mode=full` (R4 http.html#capabilities), which is what the
    /// statement already is.
    Capabilities,
    /// Read/vread: `_summary`, `_elements`.
    Read,
    /// History: `_count`, `_since`, `_at`.
    History,
    /// The search table of a type (or the common parameters for `None`), looked up once.
    Search(Option<&'a str>, TypeParams<'a>),
    /// An operation's own table.
    Operation(&'a super::config::OperationDef),
}

struct Route {
    interaction: Interaction,
    resource_type: Option<ResourceType>,
    id: Option<String>,
    version_id: Option<String>,
    compartment: Option<(ResourceType, String)>,
}

/// `Prefer`, parsed once (a `&str` name would be parsed and lowercased on every request).
static PREFER: http::HeaderName = http::HeaderName::from_static("prefer");

const fn def(ty: ParamType) -> ParamDef {
    ParamDef {
        ty,
        targets: Vec::new(),
    }
}
static READ_PARAMS: [(&str, ParamDef); 2] = [
    ("_summary", def(ParamType::Summary)),
    ("_elements", def(ParamType::Elements)),
];
static HISTORY_PARAMS: [(&str, ParamDef); 3] = [
    ("_count", def(ParamType::Count)),
    ("_since", def(ParamType::Instant)),
    ("_at", def(ParamType::Date)),
];

impl Sanitizer {
    /// Validates `config` and builds the sanitizer.
    pub fn new(config: SanitizerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let allowed = AllowedTypes::new(&config.allowed_types);
        Ok(Self { config, allowed })
    }

    /// The configuration.
    pub fn config(&self) -> &SanitizerConfig {
        &self.config
    }

    /// Parses and validates a request whose body has been read (`Vec<u8>`, `Bytes`, `&[u8]`,
    /// `String`…).
    pub fn parse<B: AsRef<[u8]>>(
        &self,
        req: &Request<B>,
    ) -> Result<SanitizedRequest, SanitizeError> {
        let target = req
            .uri()
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/");
        self.parse_parts(req.method(), target, req.headers(), req.body().as_ref())
    }

    /// Parses a request given as parts, with the raw request target (`/fhir/Patient?x=1`) as
    /// the server read it. Use this when the target has not been through `http::Uri` (or to
    /// test targets `http::Uri` would refuse on its own).
    pub fn parse_parts(
        &self,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<SanitizedRequest, SanitizeError> {
        let limits = &self.config.limits;
        if target.len() > limits.max_url_len {
            return Err(SanitizeError::UrlTooLong {
                len: target.len(),
                max: limits.max_url_len,
            });
        }
        check_headers(headers, limits.max_headers, limits.max_header_bytes)?;
        if body.len() > limits.max_body_bytes {
            return Err(SanitizeError::BodyTooLarge {
                max: limits.max_body_bytes,
            });
        }
        let (path, query) = match bytes::split_once(target, b'?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        check_raw(path, false)?;
        // Whether any parameter byte needs percent-decoding at all (usually not), and how
        // many parameters there are.
        let mut scan = match query {
            Some(q) => check_raw(q, true)?,
            None => RawScan::default(),
        };
        if bytes::has(path, b'%') {
            return Err(SanitizeError::EncodedPath);
        }
        let route = self.route(method, path)?;
        let handling = self.handling(headers)?;
        // `_format` overrides `Accept` (FHIR R4 http §3.1.0.1.7); `general_param` checks it.
        let format_param =
            query.is_some_and(|q| bytes::split(q, b'&').any(|p| p.starts_with("_format=")));
        if !format_param && !accepts_fhir_json(headers) {
            return Err(SanitizeError::UnsupportedFormat);
        }

        let is_post_search = *method == Method::POST
            && matches!(
                route.interaction,
                Interaction::SearchType | Interaction::SearchSystem
            );
        let mut form_body = "";
        if is_post_search && !body.is_empty() {
            identity_coding(headers)?;
            let ct = media_type(headers)?;
            if ct.as_deref() != Some("application/x-www-form-urlencoded") {
                return Err(SanitizeError::UnsupportedMediaType);
            }
            form_body = std::str::from_utf8(body).map_err(|_| SanitizeError::InvalidUtf8)?;
            let form = check_raw(form_body, true)?;
            scan.escapes |= form.escapes;
            scan.pairs += form.pairs;
        }
        // Parameters: the query, plus a form body for POST _search (counted by `check_raw`
        // against the limit before any is parsed).
        let raw_pairs = bytes::split(query.unwrap_or(""), b'&')
            .chain(bytes::split(form_body, b'&'))
            .filter(|p| !p.is_empty());
        let pair_count = scan.pairs;
        if pair_count > limits.max_params {
            return Err(SanitizeError::TooManyParameters {
                max: limits.max_params,
            });
        }

        let scope = self.param_scope(&route)?;
        let rtype_name = route.resource_type.as_ref().map(ResourceType::as_str);
        let (params, typed, stripped) = self.params(
            raw_pairs,
            pair_count,
            scan.escapes,
            &scope,
            rtype_name,
            handling,
        )?;

        let body_json = if is_post_search {
            None
        } else {
            self.body(method, &route, headers, body)?
        };

        Ok(SanitizedRequest {
            request: FhirRequest {
                interaction: route.interaction,
                resource_type: route.resource_type,
                id: route.id,
                version_id: route.version_id,
                compartment: route.compartment,
                params,
            },
            typed,
            stripped,
            handling,
            body: body_json,
        })
    }

    fn rtype(&self, seg: &str) -> Result<ResourceType, SanitizeError> {
        self.allowed
            .get(seg)
            .ok_or(SanitizeError::UnknownResourceType)
    }

    fn op_name<'s>(&self, seg: &'s str) -> Result<Option<&'s str>, SanitizeError> {
        match seg.strip_prefix('$') {
            None => Ok(None),
            Some(name) if self.config.operations.contains_key(name) => Ok(Some(name)),
            Some(_) => Err(SanitizeError::UnknownOperation),
        }
    }

    fn route(&self, method: &Method, path: &str) -> Result<Route, SanitizeError> {
        let base = self.config.base_path.as_str();
        let rest = path.strip_prefix(base).ok_or(SanitizeError::NotUnderBase)?;
        let rest = match rest {
            "" | "/" => "",
            r => r.strip_prefix('/').ok_or(SanitizeError::NotUnderBase)?,
        };
        // No route has more than four segments: keep the first four on the stack, but look
        // at every segment for `.`/`..`/empty ones first (those are refused as such).
        let mut seg_buf = [""; 4];
        let mut seg_count = 0usize;
        if !rest.is_empty() {
            for s in bytes::split(rest, b'/') {
                if s == "." || s == ".." {
                    return Err(SanitizeError::DotSegment);
                }
                if s.is_empty() {
                    return Err(SanitizeError::EmptySegment);
                }
                if let Some(slot) = seg_buf.get_mut(seg_count) {
                    *slot = s;
                }
                seg_count += 1;
            }
        }
        if seg_count > seg_buf.len() {
            return Err(SanitizeError::UnknownRoute);
        }
        let segs = &seg_buf[..seg_count];
        let mut r = Route {
            interaction: Interaction::SearchSystem,
            resource_type: None,
            id: None,
            version_id: None,
            compartment: None,
        };
        use InteractionCode as C;
        // What each path shape offers, as (interaction, methods asking for it); the method
        // picks one the configuration supports, or the request is refused with what the path
        // does accept. This runs before the body is read: an unsupported write is `405`,
        // not whatever its body would have been found to lack.
        let pick = |offers: &[(C, AllowedMethods)]| -> Result<C, SanitizeError> {
            let mut allow = AllowedMethods::NONE;
            for &(code, methods) in offers {
                if self.config.supports(code) {
                    if methods.contains(method) {
                        return Ok(code);
                    }
                    allow |= methods;
                }
            }
            Err(SanitizeError::MethodNotAllowed { allow })
        };
        // HEAD is GET without the body (RFC 9110 §9.3.2): wherever GET reads, HEAD types as
        // the same interaction.
        const GET: AllowedMethods = AllowedMethods::GET_HEAD;
        const POST: AllowedMethods = AllowedMethods::POST;
        const GET_POST: AllowedMethods = AllowedMethods::GET_HEAD.union(AllowedMethods::POST);
        const WRITES: [(C, AllowedMethods); 3] = [
            (C::Update, AllowedMethods::PUT),
            (C::Patch, AllowedMethods::PATCH),
            (C::Delete, AllowedMethods::DELETE),
        ];
        let id = |s: &str| {
            if is_valid_id(s) {
                Ok(s.to_owned())
            } else {
                Err(SanitizeError::InvalidId)
            }
        };
        match segs {
            [] => {
                r.interaction =
                    match pick(&[(C::SearchSystem, GET), (C::BatchOrTransaction, POST)])? {
                        C::SearchSystem => Interaction::SearchSystem,
                        _ => Interaction::BatchOrTransaction,
                    };
            }
            ["metadata"] => {
                pick(&[(C::Capabilities, GET)])?;
                r.interaction = Interaction::Capabilities;
            }
            ["_history"] => {
                pick(&[(C::HistorySystem, GET)])?;
                r.interaction = Interaction::HistorySystem;
            }
            ["_search"] => {
                pick(&[(C::SearchSystem, POST)])?;
                r.interaction = Interaction::SearchSystem;
            }
            [seg] if seg.starts_with('$') => {
                let name = self.op_name(seg)?.ok_or(SanitizeError::UnknownOperation)?;
                if !self.config.operations.get(name).is_some_and(|o| o.system) {
                    return Err(SanitizeError::UnknownOperation);
                }
                pick(&[(C::Operation, GET_POST)])?;
                r.interaction = Interaction::Operation(name.to_owned());
            }
            [t] => {
                r.resource_type = Some(self.rtype(t)?);
                // Conditional update / patch / delete act on `[type]?search`.
                let [update, patch, delete] = WRITES;
                r.interaction = match pick(&[
                    (C::SearchType, GET),
                    (C::Create, POST),
                    update,
                    patch,
                    delete,
                ])? {
                    C::SearchType => Interaction::SearchType,
                    C::Create => Interaction::Create,
                    code => write_interaction(code),
                };
            }
            [t, "_search"] => {
                r.resource_type = Some(self.rtype(t)?);
                pick(&[(C::SearchType, POST)])?;
                r.interaction = Interaction::SearchType;
            }
            [t, "_history"] => {
                r.resource_type = Some(self.rtype(t)?);
                pick(&[(C::HistoryType, GET)])?;
                r.interaction = Interaction::HistoryType;
            }
            [t, seg] if seg.starts_with('$') => {
                r.resource_type = Some(self.rtype(t)?);
                let name = self.op_name(seg)?.ok_or(SanitizeError::UnknownOperation)?;
                if !self
                    .config
                    .operations
                    .get(name)
                    .is_some_and(|o| o.type_level.contains(*t))
                {
                    return Err(SanitizeError::UnknownOperation);
                }
                pick(&[(C::Operation, GET_POST)])?;
                r.interaction = Interaction::Operation(name.to_owned());
            }
            [t, i] => {
                r.resource_type = Some(self.rtype(t)?);
                r.id = Some(id(i)?);
                let [update, patch, delete] = WRITES;
                r.interaction = match pick(&[(C::Read, GET), update, patch, delete])? {
                    C::Read => Interaction::Read,
                    code => write_interaction(code),
                };
            }
            [t, i, "_history"] => {
                r.resource_type = Some(self.rtype(t)?);
                r.id = Some(id(i)?);
                pick(&[(C::HistoryInstance, GET)])?;
                r.interaction = Interaction::HistoryInstance;
            }
            [t, i, "_history", v] => {
                r.resource_type = Some(self.rtype(t)?);
                r.id = Some(id(i)?);
                r.version_id = Some(id(v)?);
                pick(&[(C::Vread, GET)])?;
                r.interaction = Interaction::Vread;
            }
            [t, i, seg] if seg.starts_with('$') => {
                r.resource_type = Some(self.rtype(t)?);
                r.id = Some(id(i)?);
                let name = self.op_name(seg)?.ok_or(SanitizeError::UnknownOperation)?;
                if !self
                    .config
                    .operations
                    .get(name)
                    .is_some_and(|o| o.instance.contains(*t))
                {
                    return Err(SanitizeError::UnknownOperation);
                }
                pick(&[(C::Operation, GET_POST)])?;
                r.interaction = Interaction::Operation(name.to_owned());
            }
            [c, i, t] => {
                let comp = self.rtype(c)?;
                if !self.config.compartments.contains(*c) {
                    return Err(SanitizeError::UnknownRoute);
                }
                let cid = id(i)?;
                r.resource_type = Some(self.rtype(t)?);
                pick(&[(C::SearchType, GET)])?;
                r.compartment = Some((comp, cid));
                r.interaction = Interaction::SearchCompartment;
            }
            _ => return Err(SanitizeError::UnknownRoute),
        }
        Ok(r)
    }

    fn handling(&self, headers: &HeaderMap) -> Result<Handling, SanitizeError> {
        let mut chosen = None;
        for v in headers.get_all(&PREFER) {
            let s = v.to_str().map_err(|_| SanitizeError::InvalidPrefer)?;
            for pref in s.split([',', ';']) {
                let pref = pref.trim();
                if let Some(h) = pref.strip_prefix("handling=") {
                    let h = match h.trim_matches('"') {
                        "strict" => Handling::Strict,
                        "lenient" => Handling::Lenient,
                        _ => return Err(SanitizeError::InvalidPrefer),
                    };
                    if chosen.is_some_and(|c| c != h) {
                        return Err(SanitizeError::InvalidPrefer);
                    }
                    chosen = Some(h);
                }
            }
        }
        Ok(match chosen {
            Some(Handling::Lenient) if self.config.allow_lenient => Handling::Lenient,
            Some(_) => Handling::Strict,
            None => self.config.default_handling,
        })
    }

    fn param_scope<'a>(&'a self, r: &'a Route) -> Result<ParamScope<'a>, SanitizeError> {
        let t = r.resource_type.as_ref().map(ResourceType::as_str);
        Ok(match &r.interaction {
            Interaction::Capabilities => ParamScope::Capabilities,
            Interaction::BatchOrTransaction => ParamScope::None,
            Interaction::Read | Interaction::Vread => ParamScope::Read,
            Interaction::HistoryInstance
            | Interaction::HistoryType
            | Interaction::HistorySystem => ParamScope::History,
            Interaction::SearchType
            | Interaction::SearchCompartment
            | Interaction::SearchSystem => ParamScope::Search(t, self.config.table.for_type(t)),
            Interaction::Create => ParamScope::None,
            Interaction::Update | Interaction::Patch | Interaction::Delete => {
                if r.id.is_some() {
                    ParamScope::None
                } else {
                    ParamScope::Search(t, self.config.table.for_type(t))
                }
            }
            Interaction::Operation(name) => match self.config.operations.get(name) {
                Some(op) => ParamScope::Operation(op),
                None => return Err(SanitizeError::UnknownOperation),
            },
            // Interactions added later take no parameters until declared here.
            #[allow(unreachable_patterns)]
            _ => ParamScope::None,
        })
    }

    fn lookup<'a>(&'a self, scope: &ParamScope<'a>, name: &str) -> Option<&'a ParamDef> {
        let fixed = |list: &'static [(&str, ParamDef)]| {
            list.iter().find(|(n, _)| *n == name).map(|(_, d)| d)
        };
        match scope {
            ParamScope::None | ParamScope::Capabilities => None,
            ParamScope::Read => fixed(&READ_PARAMS),
            ParamScope::History => fixed(&HISTORY_PARAMS),
            ParamScope::Search(_, params) => params.get(name),
            ParamScope::Operation(op) => op.params.get(name),
        }
    }

    #[allow(clippy::type_complexity)]
    fn params<'p>(
        &self,
        pairs: impl Iterator<Item = &'p str>,
        pair_count: usize,
        escapes: bool,
        scope: &ParamScope<'_>,
        rtype: Option<&str>,
        handling: Handling,
    ) -> Result<(Vec<SearchParam>, Vec<TypedParam>, Vec<SanitizeError>), SanitizeError> {
        let mut params = Vec::with_capacity(pair_count);
        let mut typed = Vec::with_capacity(pair_count);
        let mut stripped = Vec::new();
        if pair_count == 0 {
            return Ok((params, typed, stripped));
        }
        let limits = &self.config.limits;
        let ctx = ValueCtx {
            table: &self.config.table,
            allowed: &self.allowed,
            resource_type: rtype,
            max_count: limits.max_count,
        };
        let mut total_values = 0usize;
        for pair in pairs {
            let (raw_name, raw_value) = bytes::split_once(pair, b'=').unwrap_or((pair, ""));
            let decoded_name = decode_name(raw_name)?;
            let name = check_name(&decoded_name)?;
            // `check_raw` has refused controls, DEL and every non-ASCII byte in the whole query
            // (and form body), and said whether it holds any `%` or `+`; a value without
            // them is already its decoded, checked self (and cannot be double-encoded):
            // borrow it as it is.
            let value = if escapes && raw_value.bytes().any(|b| b == b'%' || b == b'+') {
                decode_cow(raw_value)?
            } else {
                Cow::Borrowed(raw_value)
            };
            if value.len() > limits.max_value_len {
                return Err(SanitizeError::ValueTooLong {
                    name: safe_name(name),
                });
            }
            // FHIR's general parameters apply to every interaction and shape only the
            // encoding of the answer: checked here, never passed on.
            if general_param(name, &value)? {
                continue;
            }
            if matches!(scope, ParamScope::Capabilities) && name == "mode" {
                // `full` is the default the handler answers anyway: checked here, never passed
                // on. `normative` and `terminology` ask for other documents it does not serve.
                if value == "full" {
                    continue;
                }
                return Err(SanitizeError::UnsupportedParameter {
                    name: safe_name(name),
                });
            }
            if matches!(scope, ParamScope::None | ParamScope::Capabilities) {
                return Err(SanitizeError::ParametersNotAllowed);
            }
            let values = split_unescaped_raw(value);
            total_values += values.len();
            if total_values > limits.max_params {
                return Err(SanitizeError::TooManyParameters {
                    max: limits.max_params,
                });
            }
            match self.one_param(&ctx, scope, rtype, name, values) {
                Ok((sp, tp)) => {
                    check_duplicate(&params, &typed, &sp, &tp)?;
                    params.push(sp);
                    typed.push(tp);
                }
                Err(e) if handling == Handling::Lenient && e.strippable() => stripped.push(e),
                Err(e) => return Err(e),
            }
        }
        Ok((params, typed, stripped))
    }

    fn one_param(
        &self,
        ctx: &ValueCtx<'_>,
        scope: &ParamScope<'_>,
        rtype: Option<&str>,
        name: &str,
        values: Vec<String>,
    ) -> Result<(SearchParam, TypedParam), SanitizeError> {
        // `_has:Type:ref:param[:modifier]`.
        if let Some(rest) = name.strip_prefix("_has:") {
            if !matches!(scope, ParamScope::Search(Some(_), _))
                || self.lookup(scope, "_has").is_none()
            {
                return Err(SanitizeError::UnknownParameter {
                    name: "_has".into(),
                });
            }
            let parts: Vec<&str> = rest.split(':').collect();
            let (t, reference, inner, modifier) = match parts.as_slice() {
                [t, r, p] => (*t, *r, *p, None),
                [t, r, p, m] => (*t, *r, *p, Some(*m)),
                _ => return Err(SanitizeError::invalid(name, ParamType::Has)),
            };
            let bad = || SanitizeError::invalid(name, ParamType::Has);
            let has_type = ctx_type(&self.allowed, t).ok_or_else(bad)?;
            let ref_def = self
                .config
                .table
                .get_specific(t, reference)
                .ok_or_else(bad)?;
            let searched = rtype.and_then(ResourceType::new).ok_or_else(bad)?;
            if ref_def.ty != ParamType::Reference
                || !(ref_def.targets.is_empty() || ref_def.targets.contains(&searched))
            {
                return Err(bad());
            }
            if inner.contains('.') || inner.starts_with("_has") {
                return Err(SanitizeError::ChainNotSupported {
                    name: safe_name(name),
                });
            }
            let def = self.config.table.get_specific(t, inner).ok_or_else(bad)?;
            if let Some(m) = modifier {
                if !def.ty.allows_modifier(m) {
                    return Err(SanitizeError::InvalidModifier {
                        name: safe_name(name),
                    });
                }
            }
            let inner_ctx = ValueCtx {
                table: ctx.table,
                allowed: ctx.allowed,
                resource_type: Some(t),
                max_count: ctx.max_count,
            };
            let typed_values = inner_ctx.parse_all(name, def, modifier, &values)?;
            let base_name = match modifier {
                Some(m) => &name[..name.len() - m.len() - 1],
                None => name,
            };
            return Ok((
                SearchParam {
                    name: base_name.to_owned(),
                    modifier: modifier.map(str::to_owned),
                    values,
                },
                TypedParam {
                    ty: def.ty,
                    values: typed_values,
                    has: Some(HasClause {
                        resource_type: has_type,
                        reference: reference.to_owned(),
                        param: inner.to_owned(),
                    }),
                },
            ));
        }
        let (base, modifier) = match bytes::split_once(name, b':') {
            Some((b, m)) => (b, Some(m)),
            None => (name, None),
        };
        if bytes::has(name, b'.') {
            return Err(SanitizeError::ChainNotSupported {
                name: safe_name(name),
            });
        }
        if base == "_has" {
            return Err(SanitizeError::invalid(name, ParamType::Has));
        }
        let def = self
            .lookup(scope, base)
            .ok_or_else(|| SanitizeError::UnknownParameter {
                name: safe_name(base),
            })?;
        if let Some(m) = modifier {
            let type_modifier =
                def.ty == ParamType::Reference && ctx_type(&self.allowed, m).is_some();
            if !(def.ty.allows_modifier(m) || type_modifier) {
                return Err(SanitizeError::InvalidModifier {
                    name: safe_name(base),
                });
            }
        }
        let one_only = matches!(
            def.ty,
            ParamType::Count | ParamType::Summary | ParamType::Total | ParamType::Instant
        );
        if one_only && values.len() > 1 {
            return Err(SanitizeError::invalid(base, def.ty));
        }
        let typed_values = ctx.parse_all(base, def, modifier, &values)?;
        let mut values = values;
        match def.ty {
            // A summary or element subset is a view the guard cannot check against a grant
            // (it drops the elements classification and the compartment check read), so the
            // API does not offer one; `_summary=false` asks for the whole resource and passes.
            ParamType::Summary
                if typed_values
                    .iter()
                    .any(|v| !matches!(v, TypedValue::Summary(m) if m.as_str() == "false")) =>
            {
                return Err(SanitizeError::UnsupportedParameter {
                    name: safe_name(base),
                });
            }
            ParamType::Elements => {
                return Err(SanitizeError::UnsupportedParameter {
                    name: safe_name(base),
                });
            }
            // A `_count` above the maximum was capped (a server may return fewer than asked):
            // the request passed on says the capped number, so the handler pages by it.
            ParamType::Count => {
                for (raw, typed) in values.iter_mut().zip(typed_values.iter()) {
                    if let TypedValue::Count(n) = typed {
                        if raw.len() > 9 || raw.parse::<u32>().ok() != Some(*n) {
                            *raw = n.to_string();
                        }
                    }
                }
            }
            _ => {}
        }
        Ok((
            SearchParam {
                name: base.to_owned(),
                modifier: modifier.map(str::to_owned),
                values,
            },
            TypedParam {
                ty: def.ty,
                values: typed_values,
                has: None,
            },
        ))
    }

    fn body(
        &self,
        method: &Method,
        r: &Route,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Option<serde_json::Value>, SanitizeError> {
        let needs_body = matches!(
            r.interaction,
            Interaction::Create
                | Interaction::Update
                | Interaction::Patch
                | Interaction::BatchOrTransaction
        );
        let may_have_body = needs_body
            || (matches!(r.interaction, Interaction::Operation(_)) && *method == Method::POST);
        if body.is_empty() {
            return if needs_body {
                Err(SanitizeError::MissingBody)
            } else {
                Ok(None)
            };
        }
        if !may_have_body {
            return Err(SanitizeError::BodyNotAllowed);
        }
        identity_coding(headers)?;
        let ct = media_type(headers)?.ok_or(SanitizeError::UnsupportedMediaType)?;
        let json_patch = ct == "application/json-patch+json";
        let fhir_json = ct == "application/fhir+json" || ct == "application/json";
        if !(fhir_json || (json_patch && r.interaction == Interaction::Patch)) {
            return Err(SanitizeError::UnsupportedMediaType);
        }
        check_json_depth(body, self.config.limits.max_json_depth)?;
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|_| SanitizeError::InvalidJson)?;
        let resource_type = value.get("resourceType").and_then(|v| v.as_str());
        let url_type = r.resource_type.as_ref().map(ResourceType::as_str);
        match &r.interaction {
            Interaction::Patch if json_patch => {
                if !value.is_array() {
                    return Err(SanitizeError::InvalidJson);
                }
            }
            Interaction::Patch | Interaction::Operation(_) => {
                if !value.is_object() {
                    return Err(SanitizeError::InvalidJson);
                }
                if resource_type != Some("Parameters") {
                    return Err(SanitizeError::BodyMismatch);
                }
            }
            Interaction::Create | Interaction::Update => {
                if !value.is_object() {
                    return Err(SanitizeError::InvalidJson);
                }
                if resource_type.is_none() || resource_type != url_type {
                    return Err(SanitizeError::BodyMismatch);
                }
                if let Some(url_id) = &r.id {
                    if value.get("id").and_then(|v| v.as_str()) != Some(url_id.as_str()) {
                        return Err(SanitizeError::BodyMismatch);
                    }
                }
            }
            Interaction::BatchOrTransaction => {
                let bundle_type = value.get("type").and_then(|v| v.as_str());
                if resource_type != Some("Bundle")
                    || !matches!(bundle_type, Some("batch" | "transaction"))
                {
                    return Err(SanitizeError::BodyMismatch);
                }
            }
            _ => return Err(SanitizeError::BodyNotAllowed),
        }
        Ok(Some(value))
    }
}

/// The typed interaction of a write [`InteractionCode`] (what `pick` chose among
/// update, patch and delete).
fn write_interaction(code: InteractionCode) -> Interaction {
    match code {
        InteractionCode::Patch => Interaction::Patch,
        InteractionCode::Delete => Interaction::Delete,
        _ => Interaction::Update,
    }
}

fn ctx_type(allowed: &AllowedTypes, name: &str) -> Option<ResourceType> {
    allowed.get(name)
}

/// Single-valued parameters sent twice must agree (`patient` and `subject` count as one).
fn check_duplicate(
    params: &[SearchParam],
    typed: &[TypedParam],
    sp: &SearchParam,
    tp: &TypedParam,
) -> Result<(), SanitizeError> {
    if !tp.ty.single_valued() || tp.has.is_some() {
        return Ok(());
    }
    fn family(n: &str) -> &str {
        if n == "subject" { "patient" } else { n }
    }
    let key = family(&sp.name);
    for (p, t) in params.iter().zip(typed) {
        if t.has.is_none()
            && family(&p.name) == key
            && p.modifier == sp.modifier
            && !same_values(key, &t.values, &tp.values)
        {
            return Err(SanitizeError::ContradictingDuplicate {
                name: safe_name(&sp.name),
            });
        }
    }
    Ok(())
}

/// Whether two occurrences of the parameter family `key` say the same thing. A reference
/// written without its type names the type the parameter is named after (`patient=355` is
/// `patient=Patient/355`), so a paging link that repeats the patient in both forms is one
/// patient, not parameter pollution.
fn same_values(key: &str, a: &[TypedValue], b: &[TypedValue]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let implied = implied_target(key);
    fn reference<'v>(
        v: &'v TypedValue,
        implied: Option<&'static str>,
    ) -> Option<(Option<&'v str>, &'v str, Option<&'v str>)> {
        match v {
            TypedValue::Reference {
                resource_type,
                id,
                version,
            } => Some((
                resource_type.as_ref().map(ResourceType::as_str).or(implied),
                id.as_str(),
                version.as_deref(),
            )),
            _ => None,
        }
    }
    a.iter().zip(b).all(
        |(x, y)| match (reference(x, implied), reference(y, implied)) {
            (Some(rx), Some(ry)) => rx == ry,
            _ => x == y,
        },
    )
}

/// The one resource type a reference parameter's bare ids can mean, when its name says so.
fn implied_target(key: &str) -> Option<&'static str> {
    match key {
        "patient" => Some("Patient"),
        "encounter" => Some("Encounter"),
        "practitioner" => Some("Practitioner"),
        "organization" => Some("Organization"),
        "location" => Some("Location"),
        _ => None,
    }
}

/// Splits a decoded value on commas not escaped with `\`, keeping escapes as written.
fn split_unescaped_raw(s: Cow<'_, str>) -> Vec<String> {
    if !bytes::has(&s, b',') {
        return vec![s.into_owned()];
    }
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            cur.push(c);
            escaped = true;
        } else if c == ',' {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
}

/// Whether `Accept` (absent, or any of its values) admits FHIR JSON: `application/fhir+json`,
/// `application/json`, `text/json`, `application/*` or `*/*` with a non-zero `q`. A value
/// that is not visible ASCII is ignored, as HTTP lets a server do with an Accept it cannot
/// read.
fn accepts_fhir_json(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::ACCEPT).iter().peekable();
    if values.peek().is_none() {
        return true;
    }
    let mut readable = false;
    for value in values {
        let Ok(value) = value.to_str() else {
            continue;
        };
        readable = true;
        for range in value.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                let (name, value) = p.split_once('=').unwrap_or((p, ""));
                let (name, value) = (name.trim(), value.trim().trim_matches('"'));
                if name.eq_ignore_ascii_case("q") {
                    value.parse::<f32>().ok().is_some_and(|q| q <= 0.0)
                } else {
                    // FHIR's version parameter (http.html#version-parameter): this API
                    // speaks R4 only, so another version is not acceptable (406).
                    name.eq_ignore_ascii_case("fhirVersion") && !is_r4_version(value)
                }
            });
            let json = [
                "application/fhir+json",
                "application/json",
                // The DSTU2 name, still sent by older clients.
                "application/json+fhir",
                "text/json",
                "application/*",
                "*/*",
            ]
            .iter()
            .any(|m| media.eq_ignore_ascii_case(m));
            if json && !refused {
                return true;
            }
        }
    }
    // Only unreadable values: treat as no Accept at all.
    !readable
}

/// Whether a `fhirVersion` media-type parameter names R4 (`4.0`, or the full `4.0.1`).
fn is_r4_version(value: &str) -> bool {
    matches!(value, "4.0" | "4.0.1")
}

fn check_headers(
    headers: &HeaderMap,
    max_count: usize,
    max_bytes: usize,
) -> Result<(), SanitizeError> {
    if headers.len() > max_count {
        return Err(SanitizeError::HeadersTooLarge);
    }
    let mut total = 0usize;
    for (name, value) in headers {
        total += name.as_str().len() + value.len() + 4;
        if total > max_bytes {
            return Err(SanitizeError::HeadersTooLarge);
        }
    }
    Ok(())
}

/// A request body must come as sent: no `Content-Encoding` but `identity`. A compressed body
/// would be checked as the bytes it is, not as what the handler might inflate it to (and a
/// small gzip can inflate to gigabytes); RFC 9110 §8.4 answers an unacceptable coding 415.
fn identity_coding(headers: &HeaderMap) -> Result<(), SanitizeError> {
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let ok = value.to_str().is_ok_and(|v| {
            v.split(',')
                .all(|c| c.trim().eq_ignore_ascii_case("identity"))
        });
        if !ok {
            return Err(SanitizeError::UnsupportedMediaType);
        }
    }
    Ok(())
}

/// The media type of `Content-Type`, lowercased, with only `charset=utf-8` allowed as a
/// parameter (plus `fhirVersion=4.0` for FHIR JSON).
fn media_type(headers: &HeaderMap) -> Result<Option<String>, SanitizeError> {
    let mut all = headers.get_all(header::CONTENT_TYPE).iter();
    let Some(v) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(SanitizeError::UnsupportedMediaType);
    }
    let s = v
        .to_str()
        .map_err(|_| SanitizeError::UnsupportedMediaType)?;
    let mut parts = s.split(';');
    let mt = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    for p in parts {
        let p = p.trim().to_ascii_lowercase();
        if p != "charset=utf-8" && p != "fhirversion=4.0" && p != "fhirversion=4.0.1" {
            return Err(SanitizeError::UnsupportedMediaType);
        }
    }
    Ok(Some(mt))
}

/// Raw request-target characters: RFC 3986 `pchar` / `/` (and `?` `|` in a query, where
/// FHIR clients send `system|code` unencoded). Everything else is refused, controls first.
fn check_raw(s: &str, query: bool) -> Result<RawScan, SanitizeError> {
    let classes = if query { &RAW_QUERY } else { &RAW_PATH };
    // One branch-free pass: OR the byte classes together and count the non-empty
    // `&`-separated pieces (a piece starts at a non-`&` byte after a `&` or at the start).
    let mut seen = 0u8;
    let mut pairs = 0usize;
    let mut after_amp = true;
    for b in s.bytes() {
        let class = classes[usize::from(b)];
        seen |= class;
        let amp = class & RAW_AMP != 0;
        pairs += usize::from(after_amp & !amp);
        after_amp = amp;
    }
    if seen & (RAW_CONTROL | RAW_ILLEGAL) != 0 {
        // Refused: name the first offending byte's reason, controls first per byte.
        for b in s.bytes() {
            let class = classes[usize::from(b)];
            if class & RAW_CONTROL != 0 {
                return Err(SanitizeError::ControlCharacter);
            }
            if class & RAW_ILLEGAL != 0 {
                return Err(SanitizeError::IllegalCharacter);
            }
        }
    }
    Ok(RawScan {
        escapes: seen & RAW_ESCAPE != 0,
        pairs: if query { pairs } else { 0 },
    })
}

/// What [`check_raw`] learnt on its one pass over the bytes.
#[derive(Debug, Default, Clone, Copy)]
struct RawScan {
    /// Whether `s` holds a `%` or a `+`, the only bytes percent-decoding changes.
    escapes: bool,
    /// For a query, its non-empty `&`-separated pieces (the parameters).
    pairs: usize,
}

/// Byte classes (bit flags) of [`check_raw`]: 0 is an allowed byte that decoding leaves alone.
const RAW_OK: u8 = 0;
/// A control character or DEL.
const RAW_CONTROL: u8 = 1;
/// Not allowed in a raw request target.
const RAW_ILLEGAL: u8 = 2;
/// Allowed, and changed by decoding (`%`, `+`).
const RAW_ESCAPE: u8 = 4;
/// Allowed, and separates the parameters of a query (`&`).
const RAW_AMP: u8 = 8;

/// The class of each byte in a raw path (`query = false`) or query (`query = true`).
const fn raw_classes(query: bool) -> [u8; 256] {
    let mut t = [RAW_ILLEGAL; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        t[b] = if c < 0x20 || c == 0x7f {
            RAW_CONTROL
        } else if c == b'%' || c == b'+' {
            RAW_ESCAPE
        } else if query && c == b'&' {
            RAW_AMP
        } else if c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'/'
                    | b'%'
            )
            || (query && matches!(c, b'?' | b'|'))
        {
            RAW_OK
        } else {
            RAW_ILLEGAL
        };
        b += 1;
    }
    t
}

static RAW_PATH: [u8; 256] = raw_classes(false);
static RAW_QUERY: [u8; 256] = raw_classes(true);

/// A parameter name: raw (never percent-encoded), `[A-Za-z0-9_.:-]{1,128}`.
/// A parameter name with its one accepted escape decoded: `%3A` for the modifier's `:`, which
/// form encoders (browsers' `URLSearchParams`, Python's `urlencode`) write for `code:not`. Any
/// other escape in a name (`%5Fcount`, `pat%69ent`) spells a letter or `_` that needs none: an
/// evasion, refused.
fn decode_name(raw: &str) -> Result<Cow<'_, str>, SanitizeError> {
    if !raw.as_bytes().contains(&b'%') {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some(escape) if escape.eq_ignore_ascii_case("%3A") => out.push(':'),
            _ => return Err(SanitizeError::InvalidParameterName),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

fn check_name(raw: &str) -> Result<&str, SanitizeError> {
    let ok = !raw.is_empty()
        && raw.len() <= 128
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    if ok {
        Ok(raw)
    } else {
        Err(SanitizeError::InvalidParameterName)
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Strict `application/x-www-form-urlencoded` decoding of one value.
///
/// Refuses: `%` without two hex digits; bytes that are not UTF-8 (overlong forms included);
/// C0/C1 controls, DEL and invisible formatting characters; a decoded `%XX` or `%uHHHH`
/// (double encoding).
pub fn decode(raw: &str) -> Result<String, SanitizeError> {
    decode_cow(raw).map(Cow::into_owned)
}

/// [`decode`] without a copy when there is nothing to decode (no `%`, no `+`).
pub(crate) fn decode_cow(raw: &str) -> Result<Cow<'_, str>, SanitizeError> {
    let bytes = raw.as_bytes();
    if !bytes.iter().any(|&b| b == b'%' || b == b'+') {
        // Nothing to decode, so nothing can be double-encoded: only the characters need a
        // look, and an ASCII value (the usual case) is checked a byte at a time.
        check_decoded_chars(raw)?;
        return Ok(Cow::Borrowed(raw));
    }
    let mut buf = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex);
                let lo = bytes.get(i + 2).copied().and_then(hex);
                match (hi, lo) {
                    (Some(h), Some(l)) => buf.push(h * 16 + l),
                    _ => return Err(SanitizeError::InvalidPercentEncoding),
                }
                i += 3;
            }
            b'+' => {
                buf.push(b' ');
                i += 1;
            }
            b => {
                buf.push(b);
                i += 1;
            }
        }
    }
    let out = String::from_utf8(buf).map_err(|_| SanitizeError::InvalidUtf8)?;
    check_decoded_chars(&out)?;
    let ob = out.as_bytes();
    for (i, b) in ob.iter().enumerate() {
        if *b == b'%' {
            let two_hex = ob.get(i + 1).copied().and_then(hex).is_some()
                && ob.get(i + 2).copied().and_then(hex).is_some();
            let u_form = matches!(ob.get(i + 1), Some(b'u' | b'U'))
                && (2..6).all(|k| ob.get(i + k).copied().and_then(hex).is_some());
            if two_hex || u_form {
                return Err(SanitizeError::DoubleEncoding);
            }
        }
    }
    Ok(Cow::Owned(out))
}

/// Refuses C0/C1 controls, DEL and invisible formatting characters in a decoded value.
fn check_decoded_chars(s: &str) -> Result<(), SanitizeError> {
    if s.is_ascii() {
        // The only ASCII characters `char::is_control` names are C0 and DEL; the invisible
        // formatting characters are all outside ASCII.
        if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err(SanitizeError::ControlCharacter);
        }
        return Ok(());
    }
    for c in s.chars() {
        if c.is_control() || is_invisible_format(c) {
            return Err(SanitizeError::ControlCharacter);
        }
    }
    Ok(())
}

fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

/// Refuses JSON nested deeper than `max` without parsing it (so a 1 MB `[[[[…` costs one
/// linear scan, not a recursion).
pub fn check_json_depth(body: &[u8], max: usize) -> Result<(), SanitizeError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Err(SanitizeError::JsonTooDeep { max });
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// `_format` (a JSON media type or its `json` shorthand, R4 http.html#mime) and `_pretty`
/// (`true`/`false`): `Ok(true)` when `name` is one of them and its value is acceptable.
fn general_param(name: &str, value: &str) -> Result<bool, SanitizeError> {
    match name {
        "_format" => {
            let mut parts = value.split(';');
            let media = parts.next().unwrap_or("").trim();
            let other_version = parts.any(|p| {
                p.split_once('=').is_some_and(|(n, v)| {
                    n.trim().eq_ignore_ascii_case("fhirVersion")
                        && !is_r4_version(v.trim().trim_matches('"'))
                })
            });
            if other_version {
                return Err(SanitizeError::UnsupportedFormat);
            }
            let json = [
                "json",
                "application/json",
                "application/fhir+json",
                "application/json+fhir",
            ]
            .iter()
            .any(|m| media.eq_ignore_ascii_case(m));
            if json {
                Ok(true)
            } else if media.is_empty() {
                Err(SanitizeError::invalid(name, ParamType::Token))
            } else {
                Err(SanitizeError::UnsupportedFormat)
            }
        }
        "_pretty" => match value {
            "true" | "false" => Ok(true),
            _ => Err(SanitizeError::invalid(name, ParamType::Token)),
        },
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sanitize::SanitizerConfig;

    fn s() -> Sanitizer {
        Sanitizer::new(SanitizerConfig::us_core("/fhir")).unwrap()
    }

    fn get(target: &str) -> Result<SanitizedRequest, SanitizeError> {
        s().parse_parts(&Method::GET, target, &HeaderMap::new(), b"")
    }

    #[test]
    fn typical_search() {
        let r = get("/fhir/Observation?patient=123&category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory&date=ge2020-01-01&_count=50").unwrap();
        assert_eq!(r.request.interaction, Interaction::SearchType);
        assert_eq!(r.request.params.len(), 4);
        assert_eq!(r.typed[3].values, vec![TypedValue::Count(50)]);
    }

    #[test]
    fn routes() {
        assert_eq!(
            get("/fhir/metadata").unwrap().request.interaction,
            Interaction::Capabilities
        );
        assert_eq!(
            get("/fhir/Patient/1").unwrap().request.interaction,
            Interaction::Read
        );
        assert_eq!(
            get("/fhir/Patient/1/_history/2")
                .unwrap()
                .request
                .version_id
                .as_deref(),
            Some("2")
        );
        assert_eq!(
            get("/fhir/Patient/1/$everything")
                .unwrap()
                .request
                .interaction,
            Interaction::Operation("everything".into())
        );
        assert_eq!(
            get("/fhir/Patient/1/Observation?code=1234-5")
                .unwrap()
                .request
                .interaction,
            Interaction::SearchCompartment
        );
        assert_eq!(
            get("/fhir/Patient/1/$nope").unwrap_err(),
            SanitizeError::UnknownOperation
        );
        assert_eq!(
            get("/fhir/../Patient").unwrap_err(),
            SanitizeError::DotSegment
        );
        assert_eq!(
            get("/fhirX/Patient").unwrap_err(),
            SanitizeError::NotUnderBase
        );
        assert_eq!(
            get("/fhir/Patient/..").unwrap_err(),
            SanitizeError::DotSegment
        );
    }

    #[test]
    fn decoding() {
        assert_eq!(decode("a%20b+c").unwrap(), "a b c");
        assert_eq!(
            decode("%zz").unwrap_err(),
            SanitizeError::InvalidPercentEncoding
        );
        assert_eq!(decode("%252e").unwrap_err(), SanitizeError::DoubleEncoding);
        assert_eq!(decode("%c0%ae").unwrap_err(), SanitizeError::InvalidUtf8);
        assert_eq!(decode("a%00").unwrap_err(), SanitizeError::ControlCharacter);
        assert_eq!(
            decode("%E2%80%AE").unwrap_err(),
            SanitizeError::ControlCharacter
        );
    }

    #[test]
    fn the_raw_scan_counts_parameters_and_escapes() {
        for q in [
            "",
            "&",
            "&&",
            "a",
            "a=1",
            "a&&b&",
            "&a=1&&b=2&",
            "a=%20&b",
            "x=1+2",
        ] {
            let scan = check_raw(q, true).unwrap();
            let pieces = q.split('&').filter(|p| !p.is_empty()).count();
            assert_eq!(scan.pairs, pieces, "{q:?}");
            assert_eq!(scan.escapes, q.contains(['%', '+']), "{q:?}");
        }
        assert_eq!(check_raw("/fhir/a&b", false).unwrap().pairs, 0);
        assert_eq!(
            check_raw("a=\u{1}", true).unwrap_err(),
            SanitizeError::ControlCharacter
        );
        assert_eq!(
            check_raw("a=<", true).unwrap_err(),
            SanitizeError::IllegalCharacter
        );
        assert_eq!(
            check_raw("a|b", false).unwrap_err(),
            SanitizeError::IllegalCharacter
        );
    }

    #[test]
    fn accept_must_admit_fhir_json() {
        let get = |accept: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, http::HeaderValue::from_str(accept).unwrap());
            s().parse_parts(&Method::GET, "/fhir/Patient/1", &headers, b"")
        };
        for ok in [
            "application/fhir+json",
            "application/fhir+json; fhirVersion=4.0",
            "application/fhir+json;fhirversion=\"4.0.1\"",
            "application/fhir+json; fhirVersion=3.0, application/fhir+json; fhirVersion=4.0",
            "application/json",
            "*/*",
            "application/*",
            "text/html, application/fhir+xml;q=0.9, */*;q=0.8",
            "APPLICATION/FHIR+JSON",
            "application/json+fhir",
        ] {
            assert!(get(ok).is_ok(), "{ok}");
        }
        for refused in [
            "application/fhir+xml",
            "application/xml, text/xml",
            "text/turtle",
            "application/fhir+json;q=0, application/fhir+xml",
            "text/html",
            "application/fhir+json; fhirVersion=3.0",
            "application/fhir+json;fhirVersion=5.0, application/json; fhirVersion=1.0",
        ] {
            assert_eq!(
                get(refused).unwrap_err(),
                SanitizeError::UnsupportedFormat,
                "{refused}"
            );
        }
        // `_format` naming another FHIR version is refused like another format.
        assert_eq!(
            s().parse_parts(
                &Method::GET,
                "/fhir/Patient/1?_format=application/fhir%2Bjson;fhirVersion=3.0",
                &HeaderMap::new(),
                b""
            )
            .unwrap_err(),
            SanitizeError::UnsupportedFormat
        );
        assert!(
            s().parse_parts(
                &Method::GET,
                "/fhir/Patient/1?_format=application/fhir%2Bjson;fhirVersion=4.0",
                &HeaderMap::new(),
                b""
            )
            .is_ok()
        );
        // `_format` overrides `Accept`.
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            http::HeaderValue::from_static("application/fhir+xml"),
        );
        assert!(
            s().parse_parts(&Method::GET, "/fhir/Patient/1?_format=json", &headers, b"")
                .is_ok()
        );
        assert_eq!(
            s().parse_parts(
                &Method::GET,
                "/fhir/Patient/1?_format=xml",
                &HeaderMap::new(),
                b""
            )
            .unwrap_err()
            .public(),
            crate::fhir::PublicProblem::NotAcceptable
        );
    }

    fn with(method: Method, target: &str) -> Result<SanitizedRequest, SanitizeError> {
        s().parse_parts(&method, target, &HeaderMap::new(), b"")
    }

    fn allow_of(e: SanitizeError) -> String {
        match e {
            SanitizeError::MethodNotAllowed { allow } => allow.to_string(),
            other => panic!("not a 405: {other:?}"),
        }
    }

    #[test]
    fn head_types_like_get_wherever_get_reads() {
        for target in [
            "/fhir/metadata",
            "/fhir/Patient/1",
            "/fhir/Patient/1/_history/2",
            "/fhir/Patient/1/_history",
            "/fhir/Patient/_history",
            "/fhir/_history",
            "/fhir/Observation?patient=1",
            "/fhir?_lastUpdated=gt2020",
            "/fhir/Patient/1/Observation",
            "/fhir/Patient/1/$everything",
        ] {
            let get = with(Method::GET, target).unwrap();
            let head = with(Method::HEAD, target).unwrap();
            assert_eq!(head, get, "{target}");
        }
        assert_eq!(
            with(Method::HEAD, "/fhir/metadata?x=1").unwrap_err(),
            SanitizeError::ParametersNotAllowed
        );
        // `mode=full` is the statement itself; the other modes are other documents.
        assert_eq!(
            with(Method::GET, "/fhir/metadata?mode=full").unwrap(),
            with(Method::GET, "/fhir/metadata").unwrap()
        );
        for mode in ["normative", "terminology", "FULL"] {
            assert!(matches!(
                with(Method::GET, &format!("/fhir/metadata?mode={mode}")).unwrap_err(),
                SanitizeError::UnsupportedParameter { .. }
            ));
        }
        // POST-only routes stay POST-only.
        assert_eq!(
            allow_of(with(Method::HEAD, "/fhir/Patient/_search").unwrap_err()),
            "POST"
        );
    }

    #[test]
    fn a_405_says_what_the_path_allows() {
        for (method, target, allow) in [
            (Method::PUT, "/fhir/Patient", "GET, HEAD"),
            (Method::DELETE, "/fhir/Patient/1", "GET, HEAD"),
            (Method::PATCH, "/fhir/Patient/1", "GET, HEAD"),
            (Method::POST, "/fhir/Patient", "GET, HEAD"),
            (Method::POST, "/fhir/Patient/1", "GET, HEAD"),
            (Method::OPTIONS, "/fhir/Patient/1", "GET, HEAD"),
            (Method::TRACE, "/fhir/Patient", "GET, HEAD"),
            (Method::PUT, "/fhir/metadata", "GET, HEAD"),
            (Method::POST, "/fhir/Patient/1/_history", "GET, HEAD"),
            (Method::PATCH, "/fhir/Patient/1/_history/1", "GET, HEAD"),
            (Method::DELETE, "/fhir/_history", "GET, HEAD"),
            (Method::GET, "/fhir/_search", "POST"),
            (Method::GET, "/fhir/Patient/_search", "POST"),
            (Method::POST, "/fhir/Patient/1/Observation", "GET, HEAD"),
            (
                Method::PUT,
                "/fhir/Patient/1/$everything",
                "GET, HEAD, POST",
            ),
            (Method::POST, "/fhir", "GET, HEAD"),
            (Method::DELETE, "/fhir", "GET, HEAD"),
        ] {
            let e = with(method.clone(), target).unwrap_err();
            assert_eq!(e.code(), "method_not_allowed", "{method} {target}");
            assert_eq!(allow_of(e), allow, "{method} {target}");
        }
    }

    #[test]
    fn writes_are_refused_before_the_body_until_enabled() {
        // Read-only by default: a write without a body is 405, not `missing_body`.
        assert_eq!(
            with(Method::PUT, "/fhir/Patient").unwrap_err().code(),
            "method_not_allowed"
        );
        let mut config = SanitizerConfig::us_core("/fhir");
        assert!(!config.supports(InteractionCode::Create));
        assert_eq!(
            config.methods(),
            AllowedMethods::GET_HEAD | AllowedMethods::POST
        );
        for code in InteractionCode::WRITES {
            config = config.allow_interaction(code);
        }
        assert_eq!(
            config.methods().to_string(),
            "GET, HEAD, POST, PUT, PATCH, DELETE"
        );
        let writes = Sanitizer::new(config).unwrap();
        let w = |m: Method, t: &str| writes.parse_parts(&m, t, &HeaderMap::new(), b"");
        assert_eq!(
            w(Method::PUT, "/fhir/Patient/1").unwrap_err().code(),
            "missing_body"
        );
        assert_eq!(
            w(Method::DELETE, "/fhir/Patient/1")
                .unwrap()
                .request
                .interaction,
            Interaction::Delete
        );
        assert_eq!(
            allow_of(w(Method::TRACE, "/fhir/Patient").unwrap_err()),
            "GET, HEAD, POST, PUT, PATCH, DELETE"
        );
        assert_eq!(
            allow_of(w(Method::POST, "/fhir/Patient/1").unwrap_err()),
            "GET, HEAD, PUT, PATCH, DELETE"
        );
        assert_eq!(
            allow_of(w(Method::PUT, "/fhir").unwrap_err()),
            "GET, HEAD, POST"
        );
        // One write only.
        let create = Sanitizer::new(
            SanitizerConfig::us_core("/fhir").allow_interaction(InteractionCode::Create),
        )
        .unwrap();
        let e = create
            .parse_parts(&Method::PUT, "/fhir/Patient", &HeaderMap::new(), b"")
            .unwrap_err();
        assert_eq!(allow_of(e), "GET, HEAD, POST");
    }

    #[test]
    fn unsupported_reads_are_405_with_what_remains() {
        let config = SanitizerConfig::us_core("/fhir")
            .deny_interaction(InteractionCode::HistoryInstance)
            .deny_interaction(InteractionCode::SearchSystem);
        let no_history = Sanitizer::new(config).unwrap();
        let g = |t: &str| no_history.parse_parts(&Method::GET, t, &HeaderMap::new(), b"");
        // Nothing supported is left at these paths: RFC 9110 §10.2.1's empty `Allow` for a
        // resource disabled by configuration.
        assert_eq!(allow_of(g("/fhir/Patient/1/_history").unwrap_err()), "");
        assert_eq!(allow_of(g("/fhir?_id=1").unwrap_err()), "");
        // Where something is supported, the `405` names it.
        let post = no_history.parse_parts(
            &Method::POST,
            "/fhir/Patient/1/_history/1",
            &HeaderMap::new(),
            b"",
        );
        assert_eq!(allow_of(post.unwrap_err()), "GET, HEAD");
        assert!(g("/fhir/Patient/1/_history/1").is_ok());
        assert!(g("/fhir/Patient/_history").is_ok());
    }

    #[test]
    fn count_above_the_maximum_is_capped() {
        for (q, n) in [
            ("_count=1000", 500),
            ("_count=501", 500),
            ("_count=500", 500),
            ("_count=0", 0),
            ("_count=0050", 50),
            ("_count=99999999999999999999", 500),
        ] {
            let r = get(&format!("/fhir/Observation?patient=1&{q}")).unwrap();
            assert_eq!(r.typed[1].values, vec![TypedValue::Count(n)], "{q}");
            // The request passed on carries the capped number (or the one sent, if within).
            let expected = if n == 500 { "500" } else { &q[7..] };
            assert_eq!(r.request.params[1].values, vec![expected.to_owned()], "{q}");
        }
        let history = get("/fhir/Patient/1/_history?_count=600").unwrap();
        assert_eq!(history.request.params[0].values, vec!["500".to_owned()]);
        assert_eq!(
            get("/fhir/Observation?_count=-1").unwrap_err().code(),
            "invalid_value"
        );
        assert_eq!(
            get("/fhir/Observation?_count=").unwrap_err().code(),
            "invalid_value"
        );
    }

    #[test]
    fn summary_and_elements_are_not_supported_except_summary_false() {
        for target in [
            "/fhir/Patient?_summary=true",
            "/fhir/Patient?_summary=count",
            "/fhir/Patient?_summary=text",
            "/fhir/Patient?_summary=data",
            "/fhir/Patient?_elements=id",
            "/fhir/Patient/1?_summary=true",
            "/fhir/Patient/1?_elements=name,gender",
        ] {
            let e = get(target).unwrap_err();
            assert_eq!(e.code(), "unsupported_parameter", "{target}");
            assert_eq!(e.public(), crate::fhir::PublicProblem::NotSupported);
            assert_eq!(e.public().issue_type(), "not-supported");
            // Not stripped under lenient handling either.
            let mut lenient = HeaderMap::new();
            lenient.insert("prefer", http::HeaderValue::from_static("handling=lenient"));
            assert_eq!(
                s().parse_parts(&Method::GET, target, &lenient, b"")
                    .unwrap_err()
                    .code(),
                "unsupported_parameter",
                "{target}"
            );
        }
        let full = get("/fhir/Patient/1?_summary=false").unwrap();
        assert_eq!(full.request.params[0].values, vec!["false".to_owned()]);
        assert!(get("/fhir/Patient?_summary=false").is_ok());
        // A malformed value is still a bad value, not an unsupported parameter.
        assert_eq!(
            get("/fhir/Patient?_summary=yes").unwrap_err().code(),
            "invalid_value"
        );
    }

    #[test]
    fn json_depth() {
        assert!(check_json_depth(b"[[[]]]", 3).is_ok());
        assert!(check_json_depth(b"[[[[]]]]", 3).is_err());
        assert!(check_json_depth(br#"{"a":"[[[[[["}"#, 3).is_ok());
    }
}
