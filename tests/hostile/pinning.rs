//! Attack tests: pinning.

#[allow(unused_imports)]
use crate::common::*;
