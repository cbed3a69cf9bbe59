//! `SVMClassifier` and `SVMRegressor`: libsvm's models (scikit-learn's SVC, NuSVC, SVR, NuSVR,
//! OneClassSVM) as the converters write them, computed as onnxruntime computes them:
//! one-vs-one voting over support vectors, Platt's pairwise probabilities (`prob_a`, `prob_b`)
//! coupled by libsvm's iterative method, and onnxruntime's choice of label and score layout.

use super::post_transform::{PostTransform, SecondClass};
use super::support::{self, ml_operator};
use crate::tensor::ClassLabels;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum KernelKind {
    Linear,
    Poly,
    Rbf,
    Sigmoid,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Kernel {
    kind: KernelKind,
    gamma: f32,
    coef0: f32,
    degree: f32,
}

impl Kernel {
    fn of(node: &NodeProto) -> TractResult<Kernel> {
        let name: Option<String> = node.get_attr_opt("kernel_type")?;
        let kind = match name.as_deref().unwrap_or("LINEAR") {
            "LINEAR" => KernelKind::Linear,
            "POLY" => KernelKind::Poly,
            "RBF" => KernelKind::Rbf,
            "SIGMOID" => KernelKind::Sigmoid,
            other => bail!("unknown kernel_type '{other}'"),
        };
        let params = support::floats_attr(node, "kernel_params")?;
        let (gamma, coef0, degree) = match *params {
            [] => (0.0, 0.0, 0.0),
            [gamma, coef0, degree, ..] => (gamma, coef0, degree),
            _ => bail!(
                "kernel_params must hold gamma, coef0 and degree, got {} values",
                params.len()
            ),
        };
        Ok(Kernel {
            kind,
            gamma,
            coef0,
            degree,
        })
    }

    /// The kernel of one input row with each of `vectors` (rows of `x.len()` values).
    /// `offset` is added to a LINEAR kernel's dot product (onnxruntime's linear mode adds
    /// `rho[0]` there).
    fn apply(&self, x: &[f32], vectors: &[f32], offset: f32, out: &mut Vec<f32>) {
        out.clear();
        for vector in vectors.chunks(x.len().max(1)) {
            let value = match self.kind {
                KernelKind::Rbf => {
                    let mut sum = 0.0f32;
                    for (a, b) in x.iter().zip(vector) {
                        let d = a - b;
                        sum += d * d;
                    }
                    (-self.gamma * sum).exp()
                }
                kind => {
                    let dot = x.iter().zip(vector).fold(0.0f32, |acc, (a, b)| acc + a * b);
                    match kind {
                        KernelKind::Linear => dot + offset,
                        KernelKind::Poly => {
                            let base = self.gamma * dot + self.coef0;
                            match self.degree {
                                2.0 => base * base,
                                3.0 => base * base * base,
                                degree => base.powf(degree),
                            }
                        }
                        _ => (self.gamma * dot + self.coef0).tanh(),
                    }
                }
            };
            out.push(value);
        }
    }
}

/// How an SVMClassifier scores: over support vectors (libsvm's SVC), or with one weight vector
/// per class (onnxruntime's "linear" mode, when there are no support vectors).
#[derive(Clone, Debug, PartialEq)]
enum ClassifierMode {
    SupportVectors {
        /// Where each class's support vectors start, and how many it has.
        starts: Vec<usize>,
        counts: Vec<usize>,
        vectors: Vec<f32>,
        /// Platt's sigmoid parameters per pair of classes; empty without probabilities.
        prob_a: Vec<f32>,
        prob_b: Vec<f32>,
    },
    PerClass,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SvmClassifier {
    kernel: Kernel,
    mode: ClassifierMode,
    labels: ClassLabels,
    features: usize,
    coefficients: Vec<f32>,
    rho: Vec<f32>,
    weights_all_positive: bool,
    /// Whether the node has prob_a (onnxruntime's label choice depends on it in every mode).
    probabilities_given: bool,
    post_transform: PostTransform,
}

impl Eq for SvmClassifier {}

pub fn svm_classifier(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((Box::new(SvmClassifier::from_node(node)?), vec![]))
}

impl SvmClassifier {
    fn from_node(node: &NodeProto) -> TractResult<SvmClassifier> {
        let mut kernel = Kernel::of(node)?;
        let coefficients: Vec<f32> = node.get_attr_vec("coefficients")?;
        let rho: Vec<f32> = node.get_attr_vec("rho")?;
        let prob_a = support::floats_attr(node, "prob_a")?;
        let prob_b = support::floats_attr(node, "prob_b")?;
        let vectors = support::floats_attr(node, "support_vectors")?;
        let counts = support::ints_attr(node, "vectors_per_class")?
            .into_iter()
            .map(usize::try_from)
            .collect::<Result<Vec<usize>, _>>()
            .map_err(|_| format_err!("vectors_per_class has a negative count"))?;
        let labels = support::class_labels(node, "classlabels_ints")?;
        let post_transform = PostTransform::of(node)?;
        let classes = labels.len();
        ensure!(
            classes > 0,
            "has no class labels (classlabels_ints or classlabels_strings)"
        );
        ensure!(!coefficients.is_empty(), "has no coefficients");
        ensure!(
            prob_a.len() == prob_b.len(),
            "prob_a has {} values but prob_b {}",
            prob_a.len(),
            prob_b.len()
        );
        let vector_count: usize = counts.iter().sum();
        let probabilities_given = !prob_a.is_empty();
        let (mode, features) = if vector_count > 0 {
            ensure!(
                counts.len() == classes,
                "vectors_per_class has {} counts for {classes} classes",
                counts.len()
            );
            ensure!(classes >= 2, "has a single class");
            ensure!(
                vectors.len().is_multiple_of(vector_count) && !vectors.is_empty(),
                "support_vectors holds {} values, not a whole number of rows for {vector_count} \
                 support vectors",
                vectors.len()
            );
            let pairs = classes * (classes - 1) / 2;
            ensure!(
                coefficients.len() >= (classes - 1) * vector_count,
                "has {} coefficients, needs {} for {classes} classes and {vector_count} support \
                 vectors",
                coefficients.len(),
                (classes - 1) * vector_count
            );
            ensure!(
                rho.len() >= pairs,
                "rho has {} values, needs one per pair of classes ({pairs})",
                rho.len()
            );
            ensure!(
                prob_a.is_empty() || prob_a.len() >= pairs,
                "prob_a has {} values, needs one per pair of classes ({pairs})",
                prob_a.len()
            );
            // onnxruntime leaves the second probability column unwritten in this case.
            ensure!(
                !(classes == 2 && prob_a.is_empty() && post_transform == PostTransform::Probit),
                "post_transform PROBIT on a binary SVM without probabilities has no defined \
                 second column"
            );
            let starts = counts
                .iter()
                .scan(0, |start, &count| {
                    let this = *start;
                    *start += count;
                    Some(this)
                })
                .collect();
            let mode = ClassifierMode::SupportVectors {
                starts,
                counts,
                vectors: vectors.clone(),
                prob_a,
                prob_b,
            };
            (mode, vectors.len() / vector_count)
        } else {
            ensure!(
                coefficients.len().is_multiple_of(classes),
                "has {} coefficients, not a whole number of rows for {classes} classes",
                coefficients.len()
            );
            ensure!(!rho.is_empty(), "has no rho");
            // onnxruntime scores with a plain dot product in this mode, whatever kernel_type says.
            kernel.kind = KernelKind::Linear;
            (ClassifierMode::PerClass, coefficients.len() / classes)
        };
        Ok(SvmClassifier {
            kernel,
            mode,
            features,
            weights_all_positive: coefficients.iter().all(|&c| c >= 0.0),
            probabilities_given,
            labels,
            coefficients,
            rho,
            post_transform,
        })
    }

    fn has_probabilities(&self) -> bool {
        matches!(&self.mode, ClassifierMode::SupportVectors { prob_a, .. } if !prob_a.is_empty())
    }

    /// Columns of the scores output.
    fn score_columns(&self) -> usize {
        let classes = self.labels.len();
        match self.mode {
            ClassifierMode::SupportVectors { .. } if !self.has_probabilities() => {
                if classes > 2 {
                    classes * (classes - 1) / 2
                } else {
                    2
                }
            }
            _ => classes,
        }
    }

    /// One row's raw scores (one per pair of classes, or per class) and the index of its
    /// label.
    fn score_row(&self, x: &[f32], kernels: &mut Vec<f32>, scores: &mut Vec<f32>) -> usize {
        let classes = self.labels.len();
        scores.clear();
        match &self.mode {
            ClassifierMode::SupportVectors {
                starts,
                counts,
                vectors,
                ..
            } => {
                self.kernel.apply(x, vectors, 0.0, kernels);
                let vector_count = kernels.len();
                let mut votes = vec![0usize; classes];
                let mut pair = 0;
                for i in 0..classes - 1 {
                    for j in i + 1..classes {
                        // libsvm's decision value for (i, j): class i's vectors weighted by their
                        // coefficients against j, and j's against i; summed in double.
                        let add_weighted = |sum: f64, class: usize, against: usize| {
                            let range = starts[class]..starts[class] + counts[class];
                            let row = &self.coefficients[against * vector_count..];
                            row[range.clone()]
                                .iter()
                                .zip(&kernels[range])
                                .fold(sum, |sum, (c, k)| sum + f64::from(c * k))
                        };
                        let sum = add_weighted(add_weighted(0.0, i, j - 1), j, i);
                        let sum = sum + f64::from(self.rho[pair]);
                        pair += 1;
                        scores.push(sum as f32);
                        votes[if sum > 0.0 { i } else { j }] += 1;
                    }
                }
                first_max_by(&votes, |a, b| a < b)
            }
            ClassifierMode::PerClass => {
                self.kernel
                    .apply(x, &self.coefficients, self.rho[0], scores);
                let best = first_max_by(scores, |a, b| a < b);
                if classes == 2 && !self.probabilities_given {
                    let weight = scores[best];
                    if (self.weights_all_positive && weight >= 0.5)
                        || (weight > 0.0 && !self.weights_all_positive)
                    {
                        return 1;
                    }
                }
                best
            }
        }
    }

    fn evaluate(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let (rows, width) = support::rows_and_width(x.shape(), "SVMClassifier")?;
        ensure!(
            width == self.features,
            "SVMClassifier expects {} features per row, got {width}",
            self.features
        );
        let x = support::floats(&x, "SVMClassifier")?;
        let classes = self.labels.len();
        let columns = self.score_columns();
        let mut winners = Vec::with_capacity(rows);
        let mut out = Vec::with_capacity(rows * columns);
        let (mut kernels, mut scores) = (vec![], vec![]);
        for row in x.chunks(width.max(1)).take(rows) {
            winners.push(self.score_row(row, &mut kernels, &mut scores));
            match &self.mode {
                ClassifierMode::SupportVectors { prob_a, prob_b, .. } if !prob_a.is_empty() => {
                    out.extend(pairwise_probabilities(classes, &scores, prob_a, prob_b));
                }
                ClassifierMode::SupportVectors { .. } if classes == 2 => {
                    let second = if self.post_transform == PostTransform::None {
                        SecondClass::Mirror
                    } else {
                        SecondClass::Complement
                    };
                    out.extend(self.post_transform.expand_binary(&scores, second));
                    continue;
                }
                _ => out.extend_from_slice(&scores),
            }
            let start = out.len() - columns;
            self.post_transform.apply(&mut out[start..], columns);
        }
        let labels = match &self.labels {
            ClassLabels::Int64(l) => {
                support::tensor(&[rows], winners.iter().map(|&w| l[w]).collect())?
            }
            ClassLabels::Strings(l) => {
                support::tensor(&[rows], winners.iter().map(|&w| l[w].clone()).collect())?
            }
        };
        let scores = support::tensor(&[rows, columns], out)?;
        Ok(tvec!(labels.into_tvalue(), scores.into_tvalue()))
    }
}

impl TypedOp for SvmClassifier {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            support::is_numeric(inputs[0].datum_type),
            "SVMClassifier takes numbers, got {:?}",
            inputs[0].datum_type
        );
        let (rows, width) = support::fact_rows_and_width(inputs[0], "SVMClassifier")?;
        support::check_width(&width, self.features, "SVMClassifier")?;
        Ok(tvec!(
            support::labels_datum_type(&self.labels).fact([rows.clone()]),
            f32::fact([rows, self.score_columns().to_dim()])
        ))
    }

    as_op!();
}

ml_operator!(SvmClassifier, "SVMClassifier", inputs: Some(1), outputs: 2);

/// Index of the first greatest element, as `std::max_element` finds it.
fn first_max_by<T>(values: &[T], less: impl Fn(&T, &T) -> bool) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate().skip(1) {
        if less(&values[best], v) {
            best = i;
        }
    }
    best
}

/// Class probabilities from the pairwise decision values, as onnxruntime computes them:
/// Platt's sigmoid per pair, clipped, then libsvm's coupling (Wu, Lin and Weng, method 2).
fn pairwise_probabilities(
    classes: usize,
    scores: &[f32],
    prob_a: &[f32],
    prob_b: &[f32],
) -> Vec<f32> {
    let mut r = vec![0.0f32; classes * classes];
    let mut pair = 0;
    for i in 0..classes - 1 {
        for j in i + 1..classes {
            let p =
                1.0 - super::post_transform::logistic(scores[pair] * prob_a[pair] + prob_b[pair]);
            let p = p.clamp(1.0e-7, 1.0 - 1.0e-7);
            r[i * classes + j] = p;
            r[j * classes + i] = 1.0 - p;
            pair += 1;
        }
    }
    couple(classes, &r)
}

/// libsvm's `multiclass_probability`, in f32 as onnxruntime runs it.
fn couple(k: usize, r: &[f32]) -> Vec<f32> {
    let mut q = vec![0.0f32; k * k];
    let mut qp = vec![0.0f32; k];
    let mut p = vec![1.0 / k as f32; k];
    let eps = 0.005 / k as f32;
    for i in 0..k {
        for j in 0..i {
            q[i * k + i] += r[j * k + i] * r[j * k + i];
            q[i * k + j] = q[j * k + i];
        }
        for j in i + 1..k {
            q[i * k + i] += r[j * k + i] * r[j * k + i];
            q[i * k + j] = -r[j * k + i] * r[i * k + j];
        }
    }
    for _ in 0..100 {
        let mut pqp = 0.0f32;
        for i in 0..k {
            qp[i] = 0.0;
            for j in 0..k {
                qp[i] += q[i * k + j] * p[j];
            }
            pqp += p[i] * qp[i];
        }
        let max_error = qp.iter().fold(0.0f32, |m, &v| {
            if (v - pqp).abs() > m {
                (v - pqp).abs()
            } else {
                m
            }
        });
        if max_error < eps {
            break;
        }
        for i in 0..k {
            let diff = (-qp[i] + pqp) / q[i * k + i];
            p[i] += diff;
            pqp = (pqp + diff * (diff * q[i * k + i] + 2.0 * qp[i])) / (1.0 + diff) / (1.0 + diff);
            for j in 0..k {
                qp[j] = (qp[j] + diff * q[i * k + j]) / (1.0 + diff);
                p[j] /= 1.0 + diff;
            }
        }
    }
    p
}

#[derive(Clone, Debug, PartialEq)]
pub struct SvmRegressor {
    kernel: Kernel,
    /// Support vectors, one row per vector; empty in linear mode (one weight per feature).
    vectors: Vec<f32>,
    coefficients: Vec<f32>,
    rho: f32,
    features: usize,
    one_class: bool,
}

impl Eq for SvmRegressor {}

pub fn svm_regressor(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((Box::new(SvmRegressor::from_node(node)?), vec![]))
}

impl SvmRegressor {
    fn from_node(node: &NodeProto) -> TractResult<SvmRegressor> {
        let mut kernel = Kernel::of(node)?;
        let vector_count: i64 = node.get_attr_opt("n_supports")?.unwrap_or(0);
        let vector_count = usize::try_from(vector_count)
            .map_err(|_| format_err!("n_supports is negative ({vector_count})"))?;
        let coefficients: Vec<f32> = node.get_attr_vec("coefficients")?;
        let rho: Vec<f32> = node.get_attr_vec("rho")?;
        let vectors = support::floats_attr(node, "support_vectors")?;
        let one_class = node.get_attr_opt::<i64>("one_class")?.unwrap_or(0) != 0;
        // post_transform is accepted and, as in onnxruntime, not applied.
        PostTransform::of(node)?;
        ensure!(!coefficients.is_empty(), "has no coefficients");
        let rho = *rho.first().ok_or_else(|| format_err!("has no rho"))?;
        let features = if vector_count > 0 {
            ensure!(
                vectors.len().is_multiple_of(vector_count) && !vectors.is_empty(),
                "support_vectors holds {} values, not a whole number of rows for {vector_count} \
                 support vectors",
                vectors.len()
            );
            ensure!(
                coefficients.len() >= vector_count,
                "has {} coefficients for {vector_count} support vectors",
                coefficients.len()
            );
            vectors.len() / vector_count
        } else {
            kernel.kind = KernelKind::Linear;
            coefficients.len()
        };
        Ok(SvmRegressor {
            kernel,
            vectors: if vector_count > 0 { vectors } else { vec![] },
            coefficients,
            rho,
            features,
            one_class,
        })
    }

    fn evaluate(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let (rows, width) = support::rows_and_width(x.shape(), "SVMRegressor")?;
        ensure!(
            width == self.features,
            "SVMRegressor expects {} features per row, got {width}",
            self.features
        );
        let x = support::floats(&x, "SVMRegressor")?;
        let mut kernels = vec![];
        let mut out = Vec::with_capacity(rows);
        for row in x.chunks(width.max(1)).take(rows) {
            let value = if self.vectors.is_empty() {
                self.kernel
                    .apply(row, &self.coefficients, self.rho, &mut kernels);
                kernels[0]
            } else {
                self.kernel.apply(row, &self.vectors, 0.0, &mut kernels);
                let sum = kernels
                    .iter()
                    .zip(&self.coefficients)
                    .fold(0.0f32, |acc, (k, c)| acc + k * c);
                sum + self.rho
            };
            out.push(match self.one_class {
                true if value > 0.0 => 1.0,
                true => -1.0,
                false => value,
            });
        }
        Ok(tvec!(support::tensor(&[rows, 1], out)?.into_tvalue()))
    }
}

impl TypedOp for SvmRegressor {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            support::is_numeric(inputs[0].datum_type),
            "SVMRegressor takes numbers, got {:?}",
            inputs[0].datum_type
        );
        let (rows, width) = support::fact_rows_and_width(inputs[0], "SVMRegressor")?;
        support::check_width(&width, self.features, "SVMRegressor")?;
        Ok(tvec!(f32::fact([rows, 1.to_dim()])))
    }

    as_op!();
}

ml_operator!(SvmRegressor, "SVMRegressor", inputs: Some(1), outputs: 1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coupling_two_classes_gives_back_the_pairwise_probability() {
        let p = couple(2, &[0.0, 0.8, 0.2, 0.0]);
        assert!(
            (p[0] - 0.8).abs() < 1e-3 && (p[1] - 0.2).abs() < 1e-3,
            "{p:?}"
        );
    }

    #[test]
    fn coupling_gives_a_distribution() {
        let r = [0.0, 0.7, 0.6, 0.3, 0.0, 0.4, 0.4, 0.6, 0.0];
        let p = couple(3, &r);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{p:?}");
        assert!(p[0] > p[1] && p[0] > p[2], "{p:?}");
    }

    #[test]
    fn ties_go_to_the_first_class_like_max_element() {
        assert_eq!(first_max_by(&[1, 3, 3, 2], |a, b| a < b), 1);
        assert_eq!(first_max_by(&[f32::NAN, 1.0], |a, b| a < b), 0);
    }

    #[test]
    fn kernels_follow_their_formulas() {
        let kernel = |kind| Kernel {
            kind,
            gamma: 0.5,
            coef0: 1.0,
            degree: 3.0,
        };
        let (x, v) = ([1.0, 2.0], [3.0, -1.0]);
        let mut out = vec![];
        kernel(KernelKind::Linear).apply(&x, &v, 0.25, &mut out);
        assert_eq!(out, [1.25]);
        kernel(KernelKind::Poly).apply(&x, &v, 0.0, &mut out);
        assert_eq!(out, [(0.5f32 * 1.0 + 1.0).powi(3)]);
        kernel(KernelKind::Rbf).apply(&x, &v, 0.0, &mut out);
        assert_eq!(out, [(-0.5f32 * 13.0).exp()]);
        kernel(KernelKind::Sigmoid).apply(&x, &v, 0.0, &mut out);
        assert_eq!(out, [1.5f32.tanh()]);
    }
}
