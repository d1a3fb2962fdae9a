//! The guard middleware (feature `tower`): a tower `Layer` + `Service` composing sanitize →
//! token → consent → enforce → handler → filter → audit.
