//! GPU done-means tests (issue 7); written below.
#![cfg(feature = "cuda")]
