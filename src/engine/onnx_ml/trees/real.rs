//! The number type an ensemble computes in: float, or double when its input is double (as
//! in onnxruntime) or when some of its attributes were given in double.

use std::fmt::Debug;
use std::ops::{Add, Div, Neg, Sub};
use tract_onnx::prelude::Datum;

pub trait Real:
    Datum
    + Copy
    + Debug
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + Send
    + Sync
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    const HALF: Self;
    /// Exact for values read from float attributes; rounds a double to float.
    fn from_f64(v: f64) -> Self;
    fn from_f32(v: f32) -> Self;
    /// Rounds to nearest, as C++ converts an integer operand compared with a float.
    fn from_i64(v: i64) -> Self;
    /// The tree count, converted as C++ converts a `size_t` operand.
    fn from_count(n: usize) -> Self;
    fn to_f32(self) -> f32;
    fn is_nan(self) -> bool;
    /// Truncates toward zero to a 32-bit integer as x86's `cvtt` instructions do: NaN and
    /// values whose truncation does not fit give `i32::MIN`.
    fn truncate_i32(self) -> i32;
}

impl Real for f32 {
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;
    const HALF: f32 = 0.5;
    fn from_f64(v: f64) -> f32 {
        v as f32
    }
    fn from_f32(v: f32) -> f32 {
        v
    }
    fn from_i64(v: i64) -> f32 {
        v as f32
    }
    fn from_count(n: usize) -> f32 {
        n as f32
    }
    fn to_f32(self) -> f32 {
        self
    }
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
    fn truncate_i32(self) -> i32 {
        if (-2_147_483_648.0..2_147_483_648.0).contains(&self) {
            self as i32
        } else {
            i32::MIN
        }
    }
}

impl Real for f64 {
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;
    const HALF: f64 = 0.5;
    fn from_f64(v: f64) -> f64 {
        v
    }
    fn from_f32(v: f32) -> f64 {
        v as f64
    }
    fn from_i64(v: i64) -> f64 {
        v as f64
    }
    fn from_count(n: usize) -> f64 {
        n as f64
    }
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
    fn truncate_i32(self) -> i32 {
        if self > -2_147_483_649.0 && self < 2_147_483_648.0 {
            self as i32
        } else {
            i32::MIN
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_follows_x86() {
        assert_eq!(1.9f32.truncate_i32(), 1);
        assert_eq!((-1.9f32).truncate_i32(), -1);
        assert_eq!(f32::NAN.truncate_i32(), i32::MIN);
        assert_eq!(f32::INFINITY.truncate_i32(), i32::MIN);
        assert_eq!(2_147_483_648f32.truncate_i32(), i32::MIN);
        assert_eq!(2_147_483_520f32.truncate_i32(), 2_147_483_520);
        assert_eq!(4_294_967_297f64.truncate_i32(), i32::MIN);
        assert_eq!((-2_147_483_648.9f64).truncate_i32(), i32::MIN);
        assert_eq!(2_147_483_647.9f64.truncate_i32(), i32::MAX);
        assert_eq!((-2_147_483_649f64).truncate_i32(), i32::MIN);
    }
}
