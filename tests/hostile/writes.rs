//! Attack tests: writes.

#[allow(unused_imports)]
use crate::common::*;
