//! Attack tests: slots.

#[allow(unused_imports)]
use crate::common::*;
