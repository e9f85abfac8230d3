//! Attack tests: receive.

#[allow(unused_imports)]
use crate::common::*;
