//! A tour of fhirguard's SMART scope engine on real scope strings.
//!
//! Run with `cargo run --release --example scope_tour`.

#![allow(clippy::print_stdout)]

use fhirguard::scope::{
    Access, Context, FhirType, Limit, ParseOptions, Permission, Scope, ScopeSet, negotiate,
};

const OBS_CAT: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

fn heading(title: &str) {
    println!(
        "\n== {title} {}",
        "=".repeat(70usize.saturating_sub(title.len()))
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("fhirguard scope tour: the SMART App Launch scope language, v1 and v2");

    // 1. Parse a real authorization request (a patient-facing research app, SMART v2).
    heading("1. parse a 12-scope authorization request");
    let request_text = format!(
        "launch/patient openid fhirUser offline_access patient/Patient.rs patient/Condition.rs \
         patient/Observation.rs?category={OBS_CAT}|laboratory \
         patient/Observation.rs?category={OBS_CAT}|vital-signs patient/MedicationRequest.rs \
         patient/AllergyIntolerance.rs patient/Immunization.rs patient/Procedure.rs"
    );
    let requested: ScopeSet = request_text.parse()?;
    for scope in &requested {
        let meaning = match scope {
            Scope::Resource(r) => {
                let mut m = format!(
                    "{} data · {} · {}",
                    r.context(),
                    r.resource(),
                    describe(r.permissions().iter())
                );
                for f in r.filters() {
                    m.push_str(&format!(" · only where {}", short(&f.to_string())));
                }
                m
            }
            Scope::LaunchContext(l) => format!("ask for a {} in context", l.resource()),
            Scope::OpenId => "OpenID Connect sign-in (id_token)".to_owned(),
            Scope::FhirUser => "id_token names the user's FHIR resource".to_owned(),
            Scope::OfflineAccess => "refresh token that outlives the session".to_owned(),
            other => format!("{other:?}"),
        };
        println!("  {}\n      {meaning}", short(&scope.to_string()));
    }

    // 2. Normal form: merge split permissions, drop what is already covered, v2 syntax.
    heading("2. normalise");
    for messy in [
        "patient/Observation.r openid patient/Observation.s patient/Condition.read \
         patient/Condition.rs?category=b,a&category=a openid user/Patient.rs",
        "patient/Observation.read patient/Patient.rs patient/*.read",
    ] {
        let set: ScopeSet = messy.parse()?;
        println!("  in:  {set}");
        println!("  out: {}", set.normalized());
    }

    // 3. v1 -> v2, and the US Core typos repaired on the way in.
    heading("3. SMART v1 -> v2, and errata repair");
    for v1 in [
        "patient/*.read",
        "user/Observation.write",
        "patient/Patient.*",
    ] {
        let s: Scope = v1.parse()?;
        println!("  {v1:<28} -> {}", s.to_v2());
    }
    let typo = "patient/Observation.rs?category=http://terminology.hl7.org//CodeSystem-observation-category|social-history";
    let fixed: Scope = typo.parse()?;
    println!("  US Core 7-9 typo in: {typo}");
    println!("                  out: {fixed}");

    // 4. A covers decision, as enforcement asks it on every request.
    heading("4. covers: may this token search lab results?");
    let granted: ScopeSet = format!(
        "launch/patient openid fhirUser patient/Patient.rs patient/Observation.rs?category={OBS_CAT}|laboratory"
    )
    .parse()?;
    println!("  granted: {}", short(&granted.to_string()));
    for want in [
        format!("patient/Observation.s?category={OBS_CAT}|laboratory"),
        format!("patient/Observation.s?category={OBS_CAT}|vital-signs"),
        "patient/Observation.s".to_owned(),
        "patient/Patient.r".to_owned(),
    ] {
        let s: Scope = want.parse()?;
        println!(
            "  {:<5} {}",
            if granted.covers(&s) { "yes" } else { "no" },
            short(&want)
        );
    }
    match granted.access(Context::Patient, FhirType::OBSERVATION, Permission::Search) {
        Access::Filtered(f) => println!(
            "  GET Observation?patient=…  -> allowed, narrowed to category in {:?}",
            f.allowed_values("category").unwrap_or_default()
        ),
        Access::Full => println!("  GET Observation -> allowed"),
        _ => println!("  GET Observation -> denied"),
    }

    // 5. Negotiation with downscoping.
    heading("5. negotiate: client registration x patient approval");
    let client: ScopeSet = "launch/patient openid fhirUser patient/*.rs".parse()?;
    let patient: ScopeSet = format!(
        "patient/Patient.rs patient/Observation.rs?category={OBS_CAT}|laboratory patient/Immunization.rs"
    )
    .parse()?;
    println!("  client may have : {client}");
    println!("  patient approved: {}", short(&patient.to_string()));
    let n = negotiate(&requested, &client, &patient);
    println!("  granted scope   : {}", short(&n.granted.to_string()));
    for d in &n.dropped {
        println!(
            "    dropped  {} ({})",
            short(&d.scope.to_string()),
            by(d.by)
        );
    }
    for nar in &n.narrowed {
        let to: Vec<String> = nar.granted.iter().map(|g| short(&g.to_string())).collect();
        println!(
            "    narrowed {} -> {} ({})",
            short(&nar.requested.to_string()),
            to.join(" "),
            by(nar.by)
        );
    }
    let wide = negotiate(
        &"launch/patient openid fhirUser patient/*.rs".parse()?,
        &client,
        &patient,
    );
    println!("  a wildcard request, narrowed to what she approved:");
    for nar in &wide.narrowed {
        let to: Vec<String> = nar.granted.iter().map(|g| short(&g.to_string())).collect();
        println!("    {} -> {}", nar.requested, to.join(" "));
    }
    let v1 = negotiate(
        &"launch/patient openid fhirUser patient/*.read".parse()?,
        &"launch/patient openid fhirUser patient/*.read".parse()?,
        &"patient/Patient.rs patient/Immunization.rs".parse()?,
    );
    println!(
        "  a v1 client asking patient/*.read gets v1 back: {}",
        v1.granted
    );

    // 6. Rejections say why.
    heading("6. rejected strings and their reasons");
    for bad in [
        "patient/Observation.dus",
        "Patient/Observation.rs",
        "patient/Observation.",
        "patient/observation.rs",
        "patient/Observation.rs?category",
        "patient/Observation.rs?code:in=http://example.org/vs",
        "launch/list?role=a&role=b",
    ] {
        match bad.parse::<Scope>() {
            Err(e) => println!("  {bad:<52} rejected: {e}"),
            Ok(s) => println!("  {bad:<52} accepted as {s}"),
        }
    }
    let (kept, rejected) = ScopeSet::parse_lenient(
        "openid patient/Observation.sr launch/patient",
        &ParseOptions::default(),
    )?;
    println!(
        "  lenient parsing keeps `{kept}` and sets aside {} scope(s): {} ({})",
        rejected.len(),
        rejected.first().map(|r| r.text.as_str()).unwrap_or(""),
        rejected
            .first()
            .map(|r| r.error.to_string())
            .unwrap_or_default()
    );
    Ok(())
}

fn by(limit: Limit) -> &'static str {
    match limit {
        Limit::Client => "not in the client's registration",
        Limit::Patient => "not approved by the patient",
        _ => "limited by policy",
    }
}

fn describe(perms: impl Iterator<Item = Permission>) -> String {
    perms
        .map(|p| match p {
            Permission::Create => "create",
            Permission::Read => "read",
            Permission::Update => "update",
            Permission::Delete => "delete",
            Permission::Search => "search",
        })
        .collect::<Vec<_>>()
        .join("+")
}

/// Shortens the long category system URL for a readable line.
fn short(s: &str) -> String {
    s.replace(OBS_CAT, "…/observation-category")
}
