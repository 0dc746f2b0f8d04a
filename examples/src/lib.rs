//! Examples of embedding the mwdeploy engine; see the `examples` targets of this crate.
