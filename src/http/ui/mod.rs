//! The web page at `/ui/`.

pub mod svg;
