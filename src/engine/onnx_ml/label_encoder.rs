//! `LabelEncoder` (every opset: `classes_strings` in 1, key and value lists in 2 and 3, also
//! `*_tensor` attributes and doubles in 4) and `CategoryMapper`: each input element looked up
//! among keys and replaced by its value, or by a default. Computed as onnxruntime computes them:
//! in opsets 2 to 4 a repeated key keeps its first value, in opset 1 and in CategoryMapper its
//! last; -0.0 and 0.0 are one key; NaN matches a NaN key from opset 4 on, never before.

use super::support::{self, ml_operator};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// A key as it is hashed: floats by their bits, with -0.0 as 0.0 and one NaN.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Int(i64),
    Bits(u64),
    Str(String),
}

impl Key {
    fn of_f64(x: f64) -> Key {
        let x = if x == 0.0 { 0.0 } else { x };
        Key::Bits(if x.is_nan() {
            f64::NAN.to_bits()
        } else {
            x.to_bits()
        })
    }
}

/// One key type's table: where each key's value is in `values`, whose last element is the
/// default.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Table {
    key_type: DatumType,
    index: HashMap<Key, usize>,
    values: Arc<Tensor>,
    nan_matches_nan: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Repeats {
    FirstWins,
    LastWins,
}

impl Table {
    fn new(
        keys: Vec<Key>,
        key_type: DatumType,
        values: Tensor,
        default: Tensor,
        repeats: Repeats,
        nan_matches_nan: bool,
    ) -> TractResult<Table> {
        ensure!(
            keys.len() == values.len(),
            "has {} keys but {} values",
            keys.len(),
            values.len()
        );
        let mut index = HashMap::new();
        for (i, key) in keys.into_iter().enumerate() {
            match (index.entry(key), repeats) {
                (Entry::Vacant(entry), _) => {
                    entry.insert(i);
                }
                (Entry::Occupied(mut entry), Repeats::LastWins) => {
                    entry.insert(i);
                }
                (Entry::Occupied(_), Repeats::FirstWins) => {}
            }
        }
        let default = default.into_shape(&[1])?;
        let len = values.len();
        let values = Tensor::stack_tensors(0, &[values.into_shape(&[len])?, default])?;
        Ok(Table {
            key_type,
            index,
            values: values.into_arc_tensor(),
            nan_matches_nan,
        })
    }

    fn value_type(&self) -> DatumType {
        self.values.datum_type()
    }

    /// Where each input element's value is.
    fn positions(&self, x: &Tensor) -> TractResult<Vec<usize>> {
        let default = self.values.len() - 1;
        let find = |key: Option<Key>| {
            key.and_then(|k| self.index.get(&k).copied())
                .unwrap_or(default)
        };
        let is_key = |nan: bool| !nan || self.nan_matches_nan;
        Ok(match x.datum_type() {
            DatumType::String => support::slice::<String>(x)?
                .iter()
                .map(|s| find(Some(Key::Str(s.clone()))))
                .collect(),
            DatumType::I64 | DatumType::TDim => support::int64s(x)?
                .iter()
                .map(|&i| find(Some(Key::Int(i))))
                .collect(),
            DatumType::F32 => support::slice::<f32>(x)?
                .iter()
                .map(|&f| find(is_key(f.is_nan()).then(|| Key::of_f64(f64::from(f)))))
                .collect(),
            DatumType::F64 => support::slice::<f64>(x)?
                .iter()
                .map(|&f| find(is_key(f.is_nan()).then(|| Key::of_f64(f))))
                .collect(),
            other => bail!("cannot look up {other:?} keys"),
        })
    }

    fn look_up(&self, x: &Tensor) -> TractResult<Tensor> {
        fn gather<T: Datum>(values: &Tensor, at: &[usize], shape: &[usize]) -> TractResult<Tensor> {
            let values = support::slice::<T>(values)?;
            support::tensor(shape, at.iter().map(|&i| values[i].clone()).collect())
        }
        let at = self.positions(x)?;
        dispatch_datum!(gather(self.value_type())(&self.values, &at, x.shape()))
    }
}

fn same_key_type(table: DatumType, input: DatumType) -> bool {
    table == input || (table == DatumType::I64 && input == DatumType::TDim)
}

/// The table for an input type: LabelEncoder of opset 1 and CategoryMapper map both ways.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Lookup {
    op: &'static str,
    tables: Vec<Table>,
}

impl Lookup {
    fn table(&self, input: DatumType) -> TractResult<&Table> {
        let expected: Vec<String> = self
            .tables
            .iter()
            .map(|t| format!("{:?}", t.key_type))
            .collect();
        self.tables
            .iter()
            .find(|t| same_key_type(t.key_type, input))
            .ok_or_else(|| {
                format_err!(
                    "{} takes {} keys, got {input:?}",
                    self.op,
                    expected.join(" or ")
                )
            })
    }

    fn evaluate(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let out = self.table(x.datum_type())?.look_up(&x)?;
        Ok(tvec!(out.into_tvalue()))
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let table = self.table(inputs[0].datum_type)?;
        Ok(tvec!(table.value_type().fact(inputs[0].shape.clone())))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelEncoder(Lookup);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CategoryMapper(Lookup);

macro_rules! lookup_op {
    ($op:ty, $name:literal) => {
        impl $op {
            fn evaluate(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
                self.0.evaluate(inputs)
            }
        }

        impl TypedOp for $op {
            fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
                self.0.output_facts(inputs)
            }

            as_op!();
        }

        ml_operator!($op, $name, inputs: Some(1), outputs: 1);
    };
}

lookup_op!(LabelEncoder, "LabelEncoder");
lookup_op!(CategoryMapper, "CategoryMapper");

fn strings_tensor(strings: Vec<String>) -> TractResult<Tensor> {
    support::tensor(&[strings.len()], strings)
}

fn string_keys(strings: &[String]) -> Vec<Key> {
    strings.iter().cloned().map(Key::Str).collect()
}

fn int_keys(ints: &[i64]) -> Vec<Key> {
    ints.iter().copied().map(Key::Int).collect()
}

const DEFAULT_STRING: &str = "_Unused";
const DEFAULT_INT64: i64 = -1;
const DEFAULT_FLOAT: f32 = -0.0;

pub fn category_mapper(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let strings = support::strings_attr(node, "cats_strings")?;
    let ints = support::ints_attr(node, "cats_int64s")?;
    ensure!(
        strings.len() == ints.len(),
        "has {} cats_strings but {} cats_int64s",
        strings.len(),
        ints.len()
    );
    let default_string: String = node
        .get_attr_opt("default_string")?
        .unwrap_or_else(|| DEFAULT_STRING.into());
    let default_int: i64 = node.get_attr_opt("default_int64")?.unwrap_or(DEFAULT_INT64);
    let tables = vec![
        Table::new(
            string_keys(&strings),
            DatumType::String,
            support::tensor(&[ints.len()], ints.clone())?,
            tensor0(default_int),
            Repeats::LastWins,
            false,
        )?,
        Table::new(
            int_keys(&ints),
            DatumType::I64,
            strings_tensor(strings)?,
            tensor0(default_string),
            Repeats::LastWins,
            false,
        )?,
    ];
    let lookup = Lookup {
        op: "CategoryMapper",
        tables,
    };
    Ok((Box::new(CategoryMapper(lookup)), vec![]))
}

pub fn label_encoder(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let opset = support::ml_opset(ctx);
    let tables = if opset <= 1 {
        classes_tables(node)?
    } else {
        vec![key_value_table(ctx, node, opset)?]
    };
    let lookup = Lookup {
        op: "LabelEncoder",
        tables,
    };
    Ok((Box::new(LabelEncoder(lookup)), vec![]))
}

/// Opset 1: `classes_strings`, strings to their index or indices to their string.
fn classes_tables(node: &NodeProto) -> TractResult<Vec<Table>> {
    let classes = support::strings_attr(node, "classes_strings")?;
    let default_string: String = node
        .get_attr_opt("default_string")?
        .unwrap_or_else(|| DEFAULT_STRING.into());
    let default_int: i64 = node.get_attr_opt("default_int64")?.unwrap_or(DEFAULT_INT64);
    let indices: Vec<i64> = (0..classes.len() as i64).collect();
    Ok(vec![
        Table::new(
            string_keys(&classes),
            DatumType::String,
            support::tensor(&[indices.len()], indices.clone())?,
            tensor0(default_int),
            Repeats::LastWins,
            false,
        )?,
        Table::new(
            int_keys(&indices),
            DatumType::I64,
            strings_tensor(classes)?,
            tensor0(default_string),
            Repeats::LastWins,
            false,
        )?,
    ])
}

/// The list attribute `{prefix}_{strings,int64s,floats}` or, from opset 4, `{prefix}_tensor`:
/// exactly one.
fn list_or_tensor(
    ctx: &ParsingContext,
    node: &NodeProto,
    prefix: &str,
    opset: i64,
) -> TractResult<Tensor> {
    let mut found = vec![];
    if let Some(strings) = node.get_attr_opt_vec::<String>(&format!("{prefix}_strings"))? {
        found.push(strings_tensor(strings)?);
    }
    if let Some(ints) = node.get_attr_opt_vec::<i64>(&format!("{prefix}_int64s"))? {
        found.push(support::tensor(&[ints.len()], ints)?);
    }
    if let Some(floats) = node.get_attr_opt_vec::<f32>(&format!("{prefix}_floats"))? {
        found.push(support::tensor(&[floats.len()], floats)?);
    }
    if opset >= 4
        && let Some(proto) =
            node.get_attr_opt::<&tract_onnx::pb::TensorProto>(&format!("{prefix}_tensor"))?
    {
        let t = ctx.load_tensor(proto)?;
        let len = t.len();
        found.push(t.into_shape(&[len])?);
    }
    ensure!(
        found.len() == 1,
        "needs exactly one of the {prefix}_* attributes, has {}",
        found.len()
    );
    Ok(found.remove(0))
}

/// Opsets 2 to 4: keys and values, and a default of the values' type.
fn key_value_table(ctx: &ParsingContext, node: &NodeProto, opset: i64) -> TractResult<Table> {
    let keys = list_or_tensor(ctx, node, "keys", opset)?;
    let values = list_or_tensor(ctx, node, "values", opset)?;
    let (key_type, value_type) = (keys.datum_type(), values.datum_type());
    use DatumType::*;
    let supported = match (key_type, value_type) {
        (I64 | F32 | String, I64 | F32 | String) => true,
        (I64, F64) | (String, F64 | I16) | (F64, F64 | String | I64) => opset >= 4,
        _ => false,
    };
    ensure!(
        supported,
        "maps {key_type:?} keys to {value_type:?} values, which onnxruntime does not"
    );
    let key_list = match key_type {
        String => string_keys(support::slice::<std::string::String>(&keys)?),
        I64 => int_keys(support::slice::<i64>(&keys)?),
        F32 => support::slice::<f32>(&keys)?
            .iter()
            .map(|&f| Key::of_f64(f64::from(f)))
            .collect(),
        _ => support::slice::<f64>(&keys)?
            .iter()
            .map(|&f| Key::of_f64(f))
            .collect(),
    };
    let default = default_value(ctx, node, value_type, opset)?;
    Table::new(
        key_list,
        key_type,
        values,
        default,
        Repeats::FirstWins,
        opset >= 4,
    )
}

/// The default of a value type: `default_tensor` (opset 4), else `default_string`,
/// `default_int64` or `default_float`, with their spec defaults. As in onnxruntime, doubles
/// and int16 take only `default_tensor`.
fn default_value(
    ctx: &ParsingContext,
    node: &NodeProto,
    value_type: DatumType,
    opset: i64,
) -> TractResult<Tensor> {
    if opset >= 4
        && let Some(proto) = node.get_attr_opt::<&tract_onnx::pb::TensorProto>("default_tensor")?
    {
        let t = ctx.load_tensor(proto)?;
        ensure!(
            t.datum_type() == value_type && t.len() >= 1,
            "default_tensor is {:?} {:?}, needs a {value_type:?} value",
            t.datum_type(),
            t.shape()
        );
        let len = t.len();
        let t = t.into_shape(&[len])?;
        return t.slice(0, 0, 1)?.into_shape(&[]);
    }
    Ok(match value_type {
        DatumType::String => tensor0(
            node.get_attr_opt::<String>("default_string")?
                .unwrap_or_else(|| DEFAULT_STRING.into()),
        ),
        DatumType::I64 => tensor0(node.get_attr_opt("default_int64")?.unwrap_or(DEFAULT_INT64)),
        DatumType::F32 => tensor0(node.get_attr_opt("default_float")?.unwrap_or(DEFAULT_FLOAT)),
        DatumType::F64 => tensor0(-0.0f64),
        DatumType::I16 => tensor0(-1i16),
        other => bail!("has values of type {other:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(keys: Vec<Key>, key_type: DatumType, repeats: Repeats, nan: bool) -> Table {
        let values = support::tensor(&[keys.len()], (0..keys.len() as i64).collect()).unwrap();
        Table::new(keys, key_type, values, tensor0(-1i64), repeats, nan).unwrap()
    }

    fn look_up(table: &Table, x: Tensor) -> Vec<i64> {
        support::slice::<i64>(&table.look_up(&x).unwrap())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn repeated_keys_keep_the_first_or_the_last_value() {
        let keys = || string_keys(&["a".into(), "b".into(), "a".into()]);
        let x = || strings_tensor(vec!["a".into(), "z".into()]).unwrap();
        let first = table(keys(), DatumType::String, Repeats::FirstWins, false);
        assert_eq!(look_up(&first, x()), [0, -1]);
        let last = table(keys(), DatumType::String, Repeats::LastWins, false);
        assert_eq!(look_up(&last, x()), [2, -1]);
    }

    #[test]
    fn nan_matches_only_when_asked_and_zeros_are_one_key() {
        let keys = vec![Key::of_f64(f64::NAN), Key::of_f64(-0.0)];
        let x = || support::tensor(&[3], vec![f32::NAN, 0.0, -0.0]).unwrap();
        let opset3 = table(keys.clone(), DatumType::F32, Repeats::FirstWins, false);
        assert_eq!(look_up(&opset3, x()), [-1, 1, 1]);
        let opset4 = table(keys, DatumType::F32, Repeats::FirstWins, true);
        assert_eq!(look_up(&opset4, x()), [0, 1, 1]);
    }

    #[test]
    fn the_wrong_key_type_is_an_error() {
        let lookup = Lookup {
            op: "LabelEncoder",
            tables: vec![table(
                int_keys(&[1]),
                DatumType::I64,
                Repeats::FirstWins,
                false,
            )],
        };
        let x = strings_tensor(vec!["a".into()]).unwrap().into_tvalue();
        let err = lookup.evaluate(tvec!(x)).unwrap_err().to_string();
        assert!(
            err.contains("LabelEncoder takes I64 keys, got String"),
            "{err}"
        );
    }
}
