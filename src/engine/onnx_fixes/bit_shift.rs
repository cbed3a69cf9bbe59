//! `BitShift`, with the ONNX reference's answers for every shift amount: a shift by a
//! negative amount or by at least the bit width gives 0, or -1 when a negative value is
//! shifted right (the sign fills every bit). tract shifts with Rust's `<<` and `>>`, which
//! take such amounts modulo the width; for the rest the answers are the same.

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::ndarray::Zip;
use tract_onnx::tract_core::ops::binary::BinMiniOp;
use tract_onnx::tract_hir::internal::*;

pub fn register(registry: &mut OnnxOpRegister) {
    registry.insert("BitShift", bit_shift);
}

fn bit_shift(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let left = match node.get_attr_opt::<&str>("direction")?.unwrap_or("LEFT") {
        "LEFT" => true,
        "RIGHT" => false,
        other => bail!("BitShift: direction must be LEFT or RIGHT, got {other}"),
    };
    Ok((BitShift { left }.into_hir(), vec![]))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct BitShift {
    left: bool,
}

/// One integer type's shifts.
trait Shift: Copy + Datum {
    fn shift(self, by: Self, left: bool) -> Self;
}

macro_rules! shift {
    ($($t:ty),*) => {$(
        impl Shift for $t {
            fn shift(self, by: $t, left: bool) -> $t {
                // Negative: a signed type (its MIN is not 0) with the sign bit set.
                let negative = <$t>::MIN != 0 && self.leading_zeros() == 0;
                match u32::try_from(by) {
                    Ok(by) if by < <$t>::BITS => {
                        if left { self << by } else { self >> by }
                    }
                    _ if !left && negative => !0,
                    _ => 0,
                }
            }
        }
    )*};
}
shift!(i8, i16, i32, i64, u8, u16, u32, u64);

impl BitShift {
    /// `c = a shifted by b`, `a` and `b` broadcast to `c`'s shape.
    fn eval_t<T: Shift>(&self, c: &mut Tensor, a: &Tensor, b: &Tensor) -> TractResult<()> {
        let a = a.to_plain_array_view::<T>()?;
        let b = b.to_plain_array_view::<T>()?;
        let mut c = c.try_as_plain_ram_mut()?;
        let mut c = c.to_array_view_mut::<T>()?;
        let shape = c.shape().to_vec();
        let (a, b) = (a.broadcast(&*shape), b.broadcast(&*shape));
        let (Some(a), Some(b)) = (a, b) else {
            bail!("BitShift: the inputs do not broadcast to {shape:?}");
        };
        Zip::from(&mut c)
            .and(&a)
            .and(&b)
            .for_each(|c, &a, &b| *c = a.shift(b, self.left));
        Ok(())
    }
}

impl BinMiniOp for BitShift {
    fn name(&self) -> &'static str {
        if self.left {
            "BitShiftLeft"
        } else {
            "BitShiftRight"
        }
    }

    fn result_datum_type(&self, a: DatumType, b: DatumType) -> TractResult<DatumType> {
        ensure!(
            a == b,
            "BitShift: the inputs are {a:?} and {b:?}, not one type"
        );
        Ok(a)
    }

    fn eval_in_a(&self, a: &mut Tensor, b: &Tensor) -> TractResult<()> {
        let input = a.clone();
        self.eval_out_of_place(a, &input, b)
    }

    fn eval_out_of_place(&self, c: &mut Tensor, a: &Tensor, b: &Tensor) -> TractResult<()> {
        match c.datum_type() {
            DatumType::I8 => self.eval_t::<i8>(c, a, b),
            DatumType::I16 => self.eval_t::<i16>(c, a, b),
            DatumType::I32 => self.eval_t::<i32>(c, a, b),
            DatumType::I64 => self.eval_t::<i64>(c, a, b),
            DatumType::U8 => self.eval_t::<u8>(c, a, b),
            DatumType::U16 => self.eval_t::<u16>(c, a, b),
            DatumType::U32 => self.eval_t::<u32>(c, a, b),
            DatumType::U64 => self.eval_t::<u64>(c, a, b),
            other => bail!("BitShift takes integers, not {other:?}"),
        }
    }

    fn is_commutative(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_shifts_saturate_like_the_onnx_reference() {
        assert_eq!((-8i8).shift(8, false), -1);
        assert_eq!(4i8.shift(9, false), 0);
        assert_eq!((-1i8).shift(127, false), -1);
        assert_eq!((-8i32).shift(32, true), 0);
        assert_eq!(1i32.shift(-1, true), 0);
        assert_eq!((-4i32).shift(-1, false), -1);
        assert_eq!(4i32.shift(-1, false), 0);
        assert_eq!(u8::MAX.shift(8, false), 0);
        assert_eq!(u64::MAX.shift(64, true), 0);
    }

    #[test]
    fn in_range_shifts_are_plain_shifts() {
        assert_eq!(64i8.shift(1, true), -128);
        assert_eq!((-8i32).shift(1, false), -4);
        assert_eq!(0x80u8.shift(7, false), 1);
        assert_eq!(1u16.shift(15, true), 0x8000);
    }
}
