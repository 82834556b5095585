//! What the repository says works, works as written: every command block of README.md and
//! docs/ run as printed (`docs`), the container image's build context assembled as `docker
//! build` would and built (`image`), and the Kubernetes manifests cross-checked against the
//! binary and each other (`manifests`). Part of the crate's one test binary (`suite`).

mod docs;
mod image;
mod manifests;
mod support;
