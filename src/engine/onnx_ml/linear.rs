//! `LinearClassifier` and `LinearRegressor` (scikit-learn's linear models, LinearSVC, SGD...),
//! computed as onnxruntime computes them. They replace tract's own, which differ from
//! onnxruntime on binary models (onnxruntime writes `[1 - s, s]`, with s through LOGISTIC
//! but through no other transform; tract writes `[-s, s]` or applies the transform to both),
//! on single-target regressors with a post_transform (onnxruntime ignores it), and on labels
//! when a transform saturates scores into ties; and which know no string labels.

use super::post_transform::{PostTransform, SecondClass};
use super::support::{self, ml_operator};
use crate::tensor::ClassLabels;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// `x · coefficientsᵀ + intercepts` for each row: `targets` scores per row.
fn scores(x: &[f32], rows: usize, coefficients: &[f32], intercepts: Option<&[f32]>) -> Vec<f32> {
    let width = coefficients.len() / intercepts.map_or(1, |i| i.len().max(1));
    let mut out = Vec::with_capacity(rows * coefficients.len() / width.max(1));
    for row in x.chunks(width.max(1)).take(rows) {
        for (t, weights) in coefficients.chunks(width.max(1)).enumerate() {
            let dot = row
                .iter()
                .zip(weights)
                .fold(0.0f32, |acc, (a, b)| acc + a * b);
            out.push(dot + intercepts.map_or(0.0, |i| i[t]));
        }
    }
    out
}

#[derive(Clone, Debug, PartialEq)]
pub struct LinearClassifier {
    labels: ClassLabels,
    coefficients: Vec<f32>,
    intercepts: Vec<f32>,
    features: usize,
    post_transform: PostTransform,
}

impl Eq for LinearClassifier {}

pub fn linear_classifier(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let coefficients: Vec<f32> = node.get_attr_vec("coefficients")?;
    let intercepts = support::floats_attr(node, "intercepts")?;
    let labels = support::class_labels(node, "classlabels_ints")?;
    let post_transform = PostTransform::of(node)?;
    let targets = intercepts.len();
    ensure!(
        targets > 0,
        "has no intercepts (onnxruntime counts the classes it scores by them)"
    );
    ensure!(
        !coefficients.is_empty() && coefficients.len().is_multiple_of(targets),
        "has {} coefficients, not a whole number of rows for {targets} intercepts",
        coefficients.len()
    );
    ensure!(
        targets == 1 || labels.len() >= targets,
        "has {} class labels for {targets} scored classes",
        labels.len()
    );
    let op = LinearClassifier {
        features: coefficients.len() / targets,
        labels,
        coefficients,
        intercepts,
        post_transform,
    };
    ensure!(
        !(op.is_binary() && post_transform == PostTransform::Probit),
        "post_transform PROBIT on a binary model has no defined second column"
    );
    Ok((Box::new(op), vec![]))
}

impl LinearClassifier {
    /// One score per row for two labels: onnxruntime writes two columns, `[1 - s, s]`.
    fn is_binary(&self) -> bool {
        self.intercepts.len() == 1 && self.labels.len() == 2
    }

    fn score_columns(&self) -> usize {
        if self.is_binary() {
            2
        } else {
            self.intercepts.len()
        }
    }

    fn label_type(&self) -> DatumType {
        support::labels_datum_type(&self.labels)
    }

    /// The label of each row, from its raw scores.
    fn labels_of(&self, scores: &[f32], rows: usize) -> TractResult<Tensor> {
        let targets = self.intercepts.len();
        let winners: Vec<usize> = scores
            .chunks(targets)
            .take(rows)
            .map(|row| {
                if targets == 1 {
                    usize::from(row[0] > 0.0)
                } else {
                    // The first greatest score wins.
                    (1..targets).fold(0, |best, j| if row[j] > row[best] { j } else { best })
                }
            })
            .collect();
        // A single score with other than two labels answers 1 or 0 ("1" or "0").
        let two_or_more = targets > 1 || self.labels.len() == 2;
        match &self.labels {
            ClassLabels::Int64(labels) => support::tensor(
                &[rows],
                winners
                    .iter()
                    .map(|&w| if two_or_more { labels[w] } else { w as i64 })
                    .collect(),
            ),
            ClassLabels::Strings(labels) => support::tensor(
                &[rows],
                winners
                    .iter()
                    .map(|&w| {
                        if two_or_more {
                            labels[w].clone()
                        } else {
                            w.to_string()
                        }
                    })
                    .collect(),
            ),
        }
    }

    fn evaluate(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let (rows, width) = support::rows_and_width(x.shape(), "LinearClassifier")?;
        ensure!(
            width == self.features,
            "LinearClassifier expects {} features per row, got {width}",
            self.features
        );
        let x = support::floats(&x, "LinearClassifier")?;
        let mut raw = scores(&x, rows, &self.coefficients, Some(&self.intercepts));
        let labels = self.labels_of(&raw, rows)?;
        let out = if self.is_binary() {
            self.post_transform
                .expand_binary(&raw, SecondClass::Complement)
        } else {
            self.post_transform.apply(&mut raw, self.intercepts.len());
            raw
        };
        let scores = support::tensor(&[rows, self.score_columns()], out)?;
        Ok(tvec!(labels.into_tvalue(), scores.into_tvalue()))
    }
}

impl TypedOp for LinearClassifier {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            support::is_numeric(inputs[0].datum_type),
            "LinearClassifier takes numbers, got {:?}",
            inputs[0].datum_type
        );
        let (rows, width) = support::fact_rows_and_width(inputs[0], "LinearClassifier")?;
        support::check_width(&width, self.features, "LinearClassifier")?;
        Ok(tvec!(
            self.label_type().fact([rows.clone()]),
            f32::fact([rows, self.score_columns().to_dim()])
        ))
    }

    as_op!();
}

ml_operator!(LinearClassifier, "LinearClassifier", inputs: Some(1), outputs: 2);

#[derive(Clone, Debug, PartialEq)]
pub struct LinearRegressor {
    coefficients: Vec<f32>,
    /// One per target, or none (onnxruntime ignores intercepts of another length).
    intercepts: Option<Vec<f32>>,
    targets: usize,
    post_transform: PostTransform,
}

impl Eq for LinearRegressor {}

pub fn linear_regressor(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let targets: i64 = node.get_attr_opt("targets")?.unwrap_or(1);
    let targets = usize::try_from(targets)
        .ok()
        .filter(|&t| t > 0)
        .ok_or_else(|| format_err!("targets must be positive, got {targets}"))?;
    let coefficients: Vec<f32> = node.get_attr_vec("coefficients")?;
    ensure!(
        !coefficients.is_empty() && coefficients.len().is_multiple_of(targets),
        "has {} coefficients, not a whole number of rows for {targets} targets",
        coefficients.len()
    );
    let intercepts = Some(support::floats_attr(node, "intercepts")?).filter(|i| i.len() == targets);
    let post_transform = PostTransform::of(node)?;
    Ok((
        Box::new(LinearRegressor {
            coefficients,
            intercepts,
            targets,
            post_transform,
        }),
        vec![],
    ))
}

impl LinearRegressor {
    fn features(&self) -> usize {
        self.coefficients.len() / self.targets
    }

    fn evaluate(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let (rows, width) = support::rows_and_width(x.shape(), "LinearRegressor")?;
        ensure!(
            width == self.features(),
            "LinearRegressor expects {} features per row, got {width}",
            self.features()
        );
        let x = support::floats(&x, "LinearRegressor")?;
        // Without intercepts, `scores` needs the row count of coefficients some other way.
        let zeros = vec![0.0; self.targets];
        let intercepts = self.intercepts.as_deref().unwrap_or(&zeros);
        let mut out = scores(&x, rows, &self.coefficients, Some(intercepts));
        self.post_transform.apply(&mut out, self.targets);
        Ok(tvec!(
            support::tensor(&[rows, self.targets], out)?.into_tvalue()
        ))
    }
}

impl TypedOp for LinearRegressor {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            support::is_numeric(inputs[0].datum_type),
            "LinearRegressor takes numbers, got {:?}",
            inputs[0].datum_type
        );
        let (rows, width) = support::fact_rows_and_width(inputs[0], "LinearRegressor")?;
        support::check_width(&width, self.features(), "LinearRegressor")?;
        Ok(tvec!(f32::fact([rows, self.targets.to_dim()])))
    }

    as_op!();
}

ml_operator!(LinearRegressor, "LinearRegressor", inputs: Some(1), outputs: 1);

#[cfg(test)]
mod tests {
    use super::*;

    fn classifier(
        intercepts: Vec<f32>,
        labels: ClassLabels,
        post: PostTransform,
    ) -> LinearClassifier {
        let features = 2;
        LinearClassifier {
            coefficients: vec![1.0; features * intercepts.len()],
            features,
            intercepts,
            labels,
            post_transform: post,
        }
    }

    fn run(op: &LinearClassifier, x: Vec<f32>) -> (Tensor, Vec<f32>) {
        let rows = x.len() / 2;
        let x = support::tensor(&[rows, 2], x).unwrap().into_tvalue();
        let out = op.evaluate(tvec!(x)).unwrap();
        let scores = support::slice::<f32>(&out[1]).unwrap().to_vec();
        (out[0].clone().into_tensor(), scores)
    }

    #[test]
    fn a_binary_model_writes_one_minus_the_score() {
        let labels = || ClassLabels::Strings(vec!["no".into(), "yes".into()]);
        let op = classifier(vec![0.0], labels(), PostTransform::Softmax);
        let (labels_out, scores) = run(&op, vec![0.25, 0.5, -1.0, 0.0]);
        assert_eq!(
            support::slice::<String>(&labels_out).unwrap(),
            ["yes", "no"]
        );
        assert_eq!(scores, [0.25, 0.75, 2.0, -1.0]);
        let op = classifier(vec![0.0], labels(), PostTransform::Logistic);
        let (_, scores) = run(&op, vec![0.0, 0.0]);
        assert_eq!(scores, [0.5, 0.5]);
    }

    #[test]
    fn labels_come_from_raw_scores_and_ties_go_first() {
        let op = classifier(
            vec![0.0, 0.0, 1.0],
            ClassLabels::Int64(vec![7, 8, 9]),
            PostTransform::None,
        );
        let (labels, _) = run(&op, vec![-1.0, 0.0]);
        assert_eq!(support::slice::<i64>(&labels).unwrap(), [9]);
        let op = classifier(
            vec![0.0, 0.0],
            ClassLabels::Int64(vec![7, 8]),
            PostTransform::None,
        );
        let (labels, _) = run(&op, vec![1.0, 1.0]);
        assert_eq!(support::slice::<i64>(&labels).unwrap(), [7]);
    }

    #[test]
    fn a_single_score_with_other_than_two_labels_answers_one_or_zero() {
        let op = classifier(vec![0.0], ClassLabels::Int64(vec![]), PostTransform::None);
        let (labels, scores) = run(&op, vec![1.0, 1.0, -1.0, 0.0]);
        assert_eq!(support::slice::<i64>(&labels).unwrap(), [1, 0]);
        assert_eq!(scores, [2.0, -1.0]);
    }

    #[test]
    fn a_wrong_feature_count_is_an_error() {
        let op = classifier(
            vec![0.0],
            ClassLabels::Int64(vec![0, 1]),
            PostTransform::None,
        );
        let x = support::tensor(&[1, 3], vec![1.0f32; 3])
            .unwrap()
            .into_tvalue();
        let err = op.evaluate(tvec!(x)).unwrap_err().to_string();
        assert!(err.contains("expects 2 features per row, got 3"), "{err}");
    }

    #[test]
    fn a_single_target_regressor_ignores_logistic_like_onnxruntime() {
        let op = LinearRegressor {
            coefficients: vec![1.0, 1.0],
            intercepts: None,
            targets: 1,
            post_transform: PostTransform::Logistic,
        };
        let x = support::tensor(&[1, 2], vec![1.0f32, 2.0])
            .unwrap()
            .into_tvalue();
        let out = op.evaluate(tvec!(x)).unwrap();
        assert_eq!(support::slice::<f32>(&out[0]).unwrap(), [3.0]);
    }
}
