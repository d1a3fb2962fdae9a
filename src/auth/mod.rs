//! Authentication building blocks: password hashing and policy, TOTP second factor,
//! risk-based step-up and failed-login throttling.
