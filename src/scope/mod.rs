//! The SMART App Launch scope language (v1 and v2): grammar, normal form, v1→v2 mapping, the
//! covers/intersection algebra and negotiation of a requested scope set.
