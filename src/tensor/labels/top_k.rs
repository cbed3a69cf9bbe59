//! The k best classes of each row of a classifier's output, for `/predict`'s `"labels"` and
//! for Triton's classification extension (`"parameters": {"classification": k}`).
//!
//! Order: highest score first; equal scores by lower class index; NaN ranks below every
//! number (Triton sorts with `>`, which leaves NaN's place undefined). k is capped at the
//! number of classes.

use super::Labels;
use crate::tensor::{Tensor, TensorData, format_shape};
use serde::ser::{Serialize, SerializeStruct, Serializer};
use std::cmp::Ordering;

/// A class score, in the output's own type (FP16 widened to FP32, which is exact).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Score {
    F32(f32),
    F64(f64),
    Int(i64),
    UInt(u64),
}

impl Serialize for Score {
    /// A JSON number; NaN and the infinities as the strings "NaN", "Infinity" and
    /// "-Infinity", as everywhere else in the server's JSON.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let non_finite = |v: f64| match v {
            v if v.is_nan() => "NaN",
            v if v > 0.0 => "Infinity",
            _ => "-Infinity",
        };
        match *self {
            Score::F32(v) if v.is_finite() => serializer.serialize_f32(v),
            Score::F64(v) if v.is_finite() => serializer.serialize_f64(v),
            Score::F32(v) => serializer.serialize_str(non_finite(f64::from(v))),
            Score::F64(v) => serializer.serialize_str(non_finite(v)),
            Score::Int(v) => serializer.serialize_i64(v),
            Score::UInt(v) => serializer.serialize_u64(v),
        }
    }
}

impl Score {
    /// As Triton writes it: C++ `std::to_string`, i.e. `%f` (six decimals) for floats,
    /// `nan`/`inf` as C prints them, plain decimal for integers.
    pub fn triton_text(&self) -> String {
        let float = |v: f64| {
            if v.is_nan() {
                if v.is_sign_negative() { "-nan" } else { "nan" }.to_owned()
            } else if v.is_infinite() {
                if v > 0.0 { "inf" } else { "-inf" }.to_owned()
            } else {
                format!("{v:.6}")
            }
        };
        match *self {
            Score::F32(v) => float(f64::from(v)),
            Score::F64(v) => float(v),
            Score::Int(v) => v.to_string(),
            Score::UInt(v) => v.to_string(),
        }
    }
}

/// One of the k best classes of a row.
#[derive(Clone, Debug, PartialEq)]
pub struct TopClass<'l> {
    pub index: usize,
    pub score: Score,
    /// `None` without labels, or for a class past the end of the labels.
    pub label: Option<&'l str>,
}

impl Serialize for TopClass<'_> {
    /// `{"label": "tabby cat", "index": 281, "score": 0.87}` (no "label" when there is none).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("TopClass", 3)?;
        if let Some(label) = self.label {
            s.serialize_field("label", label)?;
        } else {
            s.skip_field("label")?;
        }
        s.serialize_field("index", &self.index)?;
        s.serialize_field("score", &self.score)?;
        s.end()
    }
}

/// The k best classes of each row: rows are everything before the last dimension (one row
/// for a 1-D output), classes the last dimension.
pub fn top_k<'l>(
    output: &Tensor,
    k: usize,
    labels: Option<&'l Labels>,
) -> Result<Vec<Vec<TopClass<'l>>>, String> {
    let Some(&classes) = output.shape.last() else {
        return Err("a scalar output has no classes to rank".into());
    };
    let rows = output.shape[..output.shape.len() - 1].iter().product();
    ranked_rows(output, rows, classes, k, labels)
}

/// Triton's classification extension: for each batch row (the first dimension when the
/// model batches, else the whole tensor as one row), the k best of the row's elements as
/// `"score:index"` or `"score:index:label"`. The result is BYTES `[batch, k]`, or `[k]`
/// without batching, k capped at the row's element count.
pub fn triton_classification(
    output: &Tensor,
    k: usize,
    batched: bool,
    labels: Option<&Labels>,
) -> Result<Tensor, String> {
    let (rows, per_row) = match output.shape.split_first() {
        Some((&batch, rest)) if batched => (batch, rest.iter().product()),
        _ => (1, output.data.len()),
    };
    let ranked = ranked_rows(output, rows, per_row, k, labels)?;
    let kept = k.min(per_row);
    let strings = ranked
        .into_iter()
        .flatten()
        .map(|c| match c.label.filter(|l| !l.is_empty()) {
            Some(label) => format!("{}:{}:{label}", c.score.triton_text(), c.index),
            None => format!("{}:{}", c.score.triton_text(), c.index),
        })
        .collect();
    let shape = if batched && !output.shape.is_empty() {
        vec![rows, kept]
    } else {
        vec![kept]
    };
    Tensor::new(shape, TensorData::Bytes(strings))
}

fn ranked_rows<'l>(
    output: &Tensor,
    rows: usize,
    classes: usize,
    k: usize,
    labels: Option<&'l Labels>,
) -> Result<Vec<Vec<TopClass<'l>>>, String> {
    if rows.checked_mul(classes) != Some(output.data.len()) {
        return Err(format!(
            "an output of shape {} does not split into {rows} rows of {classes}",
            format_shape(&output.shape)
        ));
    }
    let k = k.min(classes);
    macro_rules! by {
        ($values:expr, $order:expr, $score:expr) => {{
            let values = $values;
            let score = $score;
            let best = (0..rows)
                .map(|r| {
                    let row = &values[r * classes..(r + 1) * classes];
                    best_indexes(row, k, $order)
                        .into_iter()
                        .map(|index| TopClass {
                            index,
                            score: score(row[index]),
                            label: labels.and_then(|l| l.get(index)),
                        })
                        .collect()
                })
                .collect();
            Ok(best)
        }};
    }
    match &output.data {
        TensorData::Fp32(v) => by!(v, float_order, Score::F32),
        TensorData::Fp64(v) => by!(v, float_order, Score::F64),
        TensorData::Fp16(v) => {
            let widened: Vec<f32> = v.iter().map(|x| x.to_f32()).collect();
            by!(&widened, float_order, Score::F32)
        }
        TensorData::Int8(v) => by!(v, Ord::cmp, |x| Score::Int(i64::from(x))),
        TensorData::Int16(v) => by!(v, Ord::cmp, |x| Score::Int(i64::from(x))),
        TensorData::Int32(v) => by!(v, Ord::cmp, |x| Score::Int(i64::from(x))),
        TensorData::Int64(v) => by!(v, Ord::cmp, Score::Int),
        TensorData::Uint8(v) => by!(v, Ord::cmp, |x| Score::UInt(u64::from(x))),
        TensorData::Uint16(v) => by!(v, Ord::cmp, |x| Score::UInt(u64::from(x))),
        TensorData::Uint32(v) => by!(v, Ord::cmp, |x| Score::UInt(u64::from(x))),
        TensorData::Uint64(v) => by!(v, Ord::cmp, Score::UInt),
        TensorData::Bool(_) | TensorData::Bytes(_) => Err(format!(
            "an output of datatype {} has no scores to rank classes by",
            output.datatype()
        )),
    }
}

/// Numbers ascending, NaN below them all (so it ranks last).
fn float_order<F: PartialOrd + Copy>(a: &F, b: &F) -> Ordering {
    #[allow(clippy::eq_op)] // x != x is the NaN test that works for every float type
    let (a_nan, b_nan) = (a != a, b != b);
    match (a_nan, b_nan) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
    }
}

/// The indexes of the k largest values, largest first, ties by lower index.
fn best_indexes<T>(values: &[T], k: usize, order: impl Fn(&T, &T) -> Ordering) -> Vec<usize> {
    if k == 0 {
        return Vec::new();
    }
    let better = |a: &usize, b: &usize| order(&values[*b], &values[*a]).then(a.cmp(b));
    let mut indexes: Vec<usize> = (0..values.len()).collect();
    if k < indexes.len() {
        indexes.select_nth_unstable_by(k - 1, better);
        indexes.truncate(k);
    }
    indexes.sort_unstable_by(better);
    indexes
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    fn tensor(shape: &[usize], data: TensorData) -> Tensor {
        Tensor::new(shape.to_vec(), data).unwrap()
    }

    fn labels(names: &[&str]) -> Labels {
        Labels::new(names.iter().map(|s| s.to_string()).collect()).unwrap()
    }

    #[test]
    fn best_first_ties_by_index_nan_last() {
        let t = tensor(
            &[1, 6],
            TensorData::Fp32(vec![0.1, f32::NAN, 0.5, 0.5, -1.0, 0.9]),
        );
        let rows = top_k(&t, 10, None).unwrap();
        let order: Vec<usize> = rows[0].iter().map(|c| c.index).collect();
        assert_eq!(order, [5, 2, 3, 0, 4, 1]);
        let rows = top_k(&t, 2, None).unwrap();
        assert_eq!(rows[0].iter().map(|c| c.index).collect::<Vec<_>>(), [5, 2]);
        assert_eq!(rows[0][0].score, Score::F32(0.9));
        assert!(top_k(&t, 0, None).unwrap()[0].is_empty());
    }

    #[test]
    fn matches_a_full_sort_on_random_rows() {
        // Against sorting every index, over rows full of ties, for every k.
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..200 {
            let values: Vec<i32> = (0..37)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed % 7) as i32
                })
                .collect();
            let mut all: Vec<usize> = (0..values.len()).collect();
            all.sort_by(|a, b| values[*b].cmp(&values[*a]).then(a.cmp(b)));
            for k in 0..=values.len() {
                assert_eq!(best_indexes(&values, k, Ord::cmp), all[..k]);
            }
        }
    }

    #[test]
    fn rows_are_everything_before_the_last_dimension() {
        let t = tensor(&[2, 1, 3], TensorData::Int64(vec![1, 3, 2, 9, 8, 7]));
        let l = labels(&["a", "b", "c"]);
        let rows = top_k(&t, 2, Some(&l)).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0][0].index, rows[0][0].label, rows[0][0].score),
            (1, Some("b"), Score::Int(3))
        );
        assert_eq!(rows[1][0].label, Some("a"));
        let one_d = tensor(&[3], TensorData::Uint8(vec![5, 6, 7]));
        assert_eq!(top_k(&one_d, 1, None).unwrap()[0][0].score, Score::UInt(7));
        let scalar = tensor(&[], TensorData::Fp32(vec![1.0]));
        assert!(top_k(&scalar, 1, None).is_err());
        let strings = tensor(&[1, 1], TensorData::Bytes(vec!["x".into()]));
        assert_eq!(
            top_k(&strings, 1, None).unwrap_err(),
            "an output of datatype BYTES has no scores to rank classes by"
        );
    }

    #[test]
    fn serializes_like_the_servers_json() {
        let t = tensor(
            &[1, 3],
            TensorData::Fp32(vec![0.25, f32::INFINITY, f32::NAN]),
        );
        let l = labels(&["cat", "dog"]);
        let rows = top_k(&t, 3, Some(&l)).unwrap();
        assert_eq!(
            serde_json::to_string(&rows).unwrap(),
            r#"[[{"label":"dog","index":1,"score":"Infinity"},{"label":"cat","index":0,"score":0.25},{"index":2,"score":"NaN"}]]"#
        );
        let half = tensor(&[2], TensorData::Fp16(vec![f16::from_f32(0.1), f16::ONE]));
        let rows = top_k(&half, 1, None).unwrap();
        assert_eq!(
            serde_json::to_string(&rows).unwrap(),
            r#"[[{"index":1,"score":1.0}]]"#
        );
    }

    #[test]
    fn triton_strings_per_batch_row() {
        // Triton's documented example: [1.1, 3.3, 0.5, 2.4] with classification 2.
        let t = tensor(&[4], TensorData::Fp32(vec![1.1, 3.3, 0.5, 2.4]));
        let out = triton_classification(&t, 2, false, None).unwrap();
        assert_eq!(out.shape, [2]);
        assert_eq!(
            out.data,
            TensorData::Bytes(vec!["3.300000:1".into(), "2.400000:3".into()])
        );
        // Batched [2, 1, 3]: rows of 3, labels where they exist (none past the list, none empty).
        let t = tensor(&[2, 1, 3], TensorData::Int32(vec![10, 5, 7, 1, 2, 3]));
        let l = labels(&["apple", "pickle"]);
        let out = triton_classification(&t, 5, true, Some(&l)).unwrap();
        assert_eq!(out.shape, [2, 3]);
        assert_eq!(
            out.data,
            TensorData::Bytes(
                [
                    "10:0:apple",
                    "7:2",
                    "5:1:pickle",
                    "3:2",
                    "2:1:pickle",
                    "1:0:apple"
                ]
                .map(String::from)
                .to_vec()
            )
        );
        // Not batched: the whole [2, 3] is one row of 6.
        let out = triton_classification(&t, 1, false, None).unwrap();
        assert_eq!(
            (out.shape.as_slice(), &out.data),
            (&[1][..], &TensorData::Bytes(vec!["10:0".into()]))
        );
        // An empty batch.
        let empty = tensor(&[0, 3], TensorData::Fp64(vec![]));
        assert_eq!(
            triton_classification(&empty, 2, true, None).unwrap().shape,
            [0, 2]
        );
    }

    #[test]
    fn triton_formats_scores_like_std_to_string() {
        let text = |s: Score| s.triton_text();
        assert_eq!(text(Score::F32(0.1)), "0.100000");
        assert_eq!(text(Score::F32(1e20)), "100000002004087734272.000000");
        assert_eq!(text(Score::F32(0.007_812_5)), "0.007812"); // ties to even, as printf
        assert_eq!(text(Score::F64(-0.0)), "-0.000000");
        assert_eq!(text(Score::F32(f32::NAN)), "nan");
        assert_eq!(text(Score::F64(f64::NEG_INFINITY)), "-inf");
        assert_eq!(text(Score::Int(-3)), "-3");
        assert_eq!(text(Score::UInt(u64::MAX)), "18446744073709551615");
    }
}
