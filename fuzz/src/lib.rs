//! What the fuzz targets share: a model signature chosen by the fuzzer's first bytes, so
//! one target covers every datatype and a range of shapes without loading a model.

use onnx_serve::tensor::{DataType, Dim, Signature, TensorSpec};

/// Takes two bytes off the front of `data` to choose one input and one output: a datatype,
/// a rank of 0 to 3, and which dimensions are symbolic. Also returns the rest of `data`.
pub fn signature(data: &[u8]) -> Option<(Signature, &[u8])> {
    let ([kind, shape], rest) = data.split_first_chunk::<2>().map(|(h, r)| (*h, r))?;
    let datatype = DataType::ALL[kind as usize % DataType::ALL.len()];
    let rank = (shape & 0b11) as usize;
    let dims = (0..rank)
        .map(|d| {
            if shape & (0b100 << d) != 0 {
                Dim::Symbolic(if d == 0 {
                    "batch".into()
                } else {
                    format!("d{d}")
                })
            } else {
                Dim::Fixed(1 + d * 2)
            }
        })
        .collect();
    // A second input sometimes, so the multi-input paths (objects by name) are reached too.
    let mut inputs = vec![TensorSpec {
        name: "x".into(),
        datatype,
        shape: dims,
        map_keys: None,
    }];
    if kind & 0x80 != 0 {
        inputs.push(TensorSpec {
            name: "y".into(),
            datatype: DataType::Fp32,
            shape: vec![Dim::Symbolic("batch".into())],
            map_keys: None,
        });
    }
    let outputs = vec![TensorSpec {
        name: "out".into(),
        datatype: DataType::Fp32,
        shape: vec![Dim::Symbolic("batch".into())],
        map_keys: None,
    }];
    Some((Signature { inputs, outputs }, rest))
}
