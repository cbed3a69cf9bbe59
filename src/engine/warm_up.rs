//! What a warm-up run is fed: zeros (false, "") in the shapes the signature declares, each
//! free size as 1. A model's first run costs more than the next ones (tract allocates what
//! later runs reuse; a model planned per input shape builds that shape's plan), and
//! `--warmup` pays for it before readiness rather than on the first request.

use crate::tensor::{DataType, Dim, Signature, Tensor, TensorData};
use half::f16;

/// One zero tensor per input, in the model's input order.
pub fn zero_inputs(signature: &Signature) -> Vec<Tensor> {
    signature
        .inputs
        .iter()
        .map(|spec| {
            let shape: Vec<usize> = (spec.shape.iter())
                .map(|d| match d {
                    Dim::Fixed(n) => *n,
                    Dim::Symbolic(_) => 1,
                })
                .collect();
            let count = shape.iter().product();
            Tensor {
                shape,
                data: zeros(spec.datatype, count),
            }
        })
        .collect()
}

fn zeros(datatype: DataType, count: usize) -> TensorData {
    match datatype {
        DataType::Bool => TensorData::Bool(vec![false; count]),
        DataType::Uint8 => TensorData::Uint8(vec![0; count]),
        DataType::Uint16 => TensorData::Uint16(vec![0; count]),
        DataType::Uint32 => TensorData::Uint32(vec![0; count]),
        DataType::Uint64 => TensorData::Uint64(vec![0; count]),
        DataType::Int8 => TensorData::Int8(vec![0; count]),
        DataType::Int16 => TensorData::Int16(vec![0; count]),
        DataType::Int32 => TensorData::Int32(vec![0; count]),
        DataType::Int64 => TensorData::Int64(vec![0; count]),
        DataType::Fp16 => TensorData::Fp16(vec![f16::ZERO; count]),
        DataType::Fp32 => TensorData::Fp32(vec![0.0; count]),
        DataType::Fp64 => TensorData::Fp64(vec![0.0; count]),
        DataType::Bytes => TensorData::Bytes(vec![String::new(); count]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::TensorSpec;

    #[test]
    fn zeros_in_the_declared_shapes_free_sizes_as_one() {
        let spec = |name: &str, datatype, shape: Vec<Dim>| TensorSpec {
            name: name.into(),
            datatype,
            shape,
            map_keys: None,
        };
        let signature = Signature {
            inputs: vec![
                spec(
                    "image",
                    DataType::Fp32,
                    vec![
                        Dim::Symbolic("batch".into()),
                        Dim::Fixed(3),
                        Dim::Symbolic("h".into()),
                        Dim::Fixed(2),
                    ],
                ),
                spec("words", DataType::Bytes, vec![Dim::Fixed(2)]),
                spec("flag", DataType::Bool, vec![]),
            ],
            outputs: vec![],
        };
        let inputs = zero_inputs(&signature);
        assert_eq!(inputs[0].shape, [1, 3, 1, 2]);
        assert_eq!(inputs[0].data, TensorData::Fp32(vec![0.0; 6]));
        assert_eq!(inputs[1].data, TensorData::Bytes(vec![String::new(); 2]));
        assert_eq!(inputs[2].shape, Vec::<usize>::new());
        assert_eq!(inputs[2].data, TensorData::Bool(vec![false]));
        assert!(signature.check_inputs(&inputs).is_ok());
    }
}
