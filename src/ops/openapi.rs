//! The API described from the loaded model: an OpenAPI 3.1 document (`GET /openapi.json`)
//! whose request and response schemas follow the model's signature, and a self-contained
//! HTML page (`GET /docs`, `docs.html`) that shows the signature and the routes and can
//! send a prediction. Both are made once, when the model is installed, and served as
//! shared bytes.
//!
//! Each route is documented where it is declared, in the route table (`RouteDoc`); this
//! file knows the schemas those entries name. The schemas say what the decoders accept: a
//! fixed dimension is an array of exactly that many items, a symbolic one an array of at
//! least one; numbers are bounded by their datatype; float elements may also be the strings
//! "NaN", "Infinity", "-Infinity".

use crate::tensor::{ClassLabels, DataType, Dim, Signature, TensorSpec};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// The page; `/*PAGE_DATA*/null` in it becomes the JSON that describes this server.
const PAGE: &str = include_str!("docs.html");
const PAGE_DATA: &str = "/*PAGE_DATA*/null";

/// Examples larger than this many elements are left out of the document (the page builds
/// its own).
const MAX_EXAMPLE_ELEMENTS: usize = 4096;

/// How one route is documented, written beside it in the route table.
#[derive(Clone, Copy, Debug)]
pub struct RouteDoc {
    /// The operation's id: `predict`, `v2_infer`.
    pub id: &'static str,
    /// The group the route is listed under: `simple`, `v2`, `health`...
    pub tag: &'static str,
    pub summary: &'static str,
    /// The schema (a component of the document) of the JSON body the route takes.
    pub takes: Option<&'static str>,
    pub answer: Answer,
    /// The route answers 503 while the model loads and while the server drains.
    pub needs_model: bool,
}

/// What a route answers with 200.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    /// JSON of this schema (a component of the document).
    Json {
        schema: &'static str,
        description: &'static str,
    },
    /// Text of this media type.
    Text {
        media_type: &'static str,
        description: &'static str,
    },
}

impl RouteDoc {
    /// A route that answers JSON of `schema`, needs the model, and takes no body.
    pub const fn new(
        id: &'static str,
        tag: &'static str,
        summary: &'static str,
        schema: &'static str,
        description: &'static str,
    ) -> RouteDoc {
        RouteDoc {
            id,
            tag,
            summary,
            takes: None,
            answer: Answer::Json {
                schema,
                description,
            },
            needs_model: true,
        }
    }

    /// A route that answers text of `media_type`.
    pub const fn text(
        id: &'static str,
        tag: &'static str,
        summary: &'static str,
        media_type: &'static str,
        description: &'static str,
    ) -> RouteDoc {
        RouteDoc {
            answer: Answer::Text {
                media_type,
                description,
            },
            ..RouteDoc::new(id, tag, summary, "", "")
        }
    }

    /// The route takes a JSON body of `schema`.
    pub const fn takes(self, schema: &'static str) -> RouteDoc {
        RouteDoc {
            takes: Some(schema),
            ..self
        }
    }

    /// The route answers whether or not the model is loaded.
    pub const fn without_model(self) -> RouteDoc {
        RouteDoc {
            needs_model: false,
            ..self
        }
    }
}

/// One route, as the document needs it.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    /// `get` or `post`.
    pub method: &'static str,
    /// The path, parameters as `{model}`.
    pub template: &'static str,
    /// Open to callers without the API key (health routes).
    pub open: bool,
    pub doc: &'static RouteDoc,
}

/// What the documents are made from.
pub struct Described<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub signature: &'a Signature,
    /// When the model's classes have labels: the labelled output's index and the number of
    /// classes. `/predict` answers then carry `"labels"`, and take `?top_k`.
    pub classes: Option<(usize, usize)>,
    /// When `/predict` takes an image body for the model's image input.
    pub image: Option<ImageDoc<'a>>,
    /// An API key is required (on every route but the open ones).
    pub auth: bool,
    pub routes: Vec<Route>,
    /// Named on the page.
    pub tract_version: &'a str,
}

/// The model's image input, which `/predict` fills from a PNG or JPEG body.
#[derive(Clone, Copy, Debug)]
pub struct ImageDoc<'a> {
    pub input: &'a str,
}

/// The schema that `/predict` takes (and that names the JSON body of the route).
const PREDICT_REQUEST: &str = "PredictRequest";

/// The two documents, ready to send.
pub struct ApiDocs {
    pub openapi: Arc<[u8]>,
    pub page: Arc<[u8]>,
}

impl ApiDocs {
    pub fn new(described: &Described) -> ApiDocs {
        let openapi = serde_json::to_vec(&described.document()).expect("JSON values serialize");
        ApiDocs {
            openapi: openapi.into(),
            page: described.page().into_bytes().into(),
        }
    }
}

/// One documented operation: a route, and whether it is the `/versions/{version}` form.
struct Operation {
    route: Route,
    versioned: bool,
}

impl Operation {
    fn all(routes: &[Route]) -> Vec<Operation> {
        let mut all = Vec::new();
        for &route in routes {
            all.push(Operation {
                route,
                versioned: false,
            });
            if has_model(&route) {
                all.push(Operation {
                    route,
                    versioned: true,
                });
            }
        }
        all
    }

    fn path(&self) -> String {
        let template = self.route.template;
        if !self.versioned {
            return template.to_owned();
        }
        // `{model}` is followed by the rest of the path, or by `:predict`.
        template.replacen("{model}", "{model}/versions/{version}", 1)
    }

    fn id(&self) -> String {
        let base = self.route.doc.id;
        if self.versioned {
            format!("{base}_versioned")
        } else {
            base.to_owned()
        }
    }
}

/// Routes under `/v1|v2/models/{model}`, which also answer under `/versions/{version}`.
fn has_model(route: &Route) -> bool {
    route.template.contains("{model}")
}

/// The schema that takes the V2 binary tensor data extension (and its header).
const INFER_REQUEST: &str = "InferRequest";

impl Described<'_> {
    fn document(&self) -> Value {
        let mut paths = Map::new();
        for op in Operation::all(&self.routes) {
            let entry = paths
                .entry(op.path())
                .or_insert_with(|| Value::Object(Map::new()));
            entry[op.route.method] = self.operation(&op);
        }
        let mut document = json!({
            "openapi": "3.1.0",
            "info": {
                "title": format!("onnx-serve: {}", self.name),
                "version": env!("CARGO_PKG_VERSION"),
                "description": format!(
                    "The API of onnx-serve serving the model '{}' (version {}). The schemas \
                     follow the model's signature. Every response carries X-Request-Id (a \
                     request's own, when it sends one of up to 128 printable ASCII \
                     characters); errors are {{\"error\": \"...\", \"request_id\": \"...\"}}.",
                    self.name, self.version
                ),
            },
            "paths": paths,
            "components": self.components(),
        });
        if self.auth {
            document["security"] = json!([{"bearer": []}]);
        }
        document
    }

    fn operation(&self, op: &Operation) -> Value {
        let route = &op.route;
        let doc = route.doc;
        let mut operation = json!({
            "operationId": op.id(),
            "summary": doc.summary,
            "tags": [doc.tag],
            "responses": self.responses(route),
        });
        let mut parameters = Vec::new();
        if has_model(route) {
            parameters.push(json!({
                "name": "model", "in": "path", "required": true,
                "description": "The model's name; this server serves one",
                "schema": {"type": "string", "enum": [self.name]},
            }));
        }
        if op.versioned {
            parameters.push(json!({
                "name": "version", "in": "path", "required": true,
                "description": "The model's version; this server serves one",
                "schema": {"type": "string", "enum": [self.version]},
            }));
        }
        if let Some(body) = self.request_body(doc) {
            operation["requestBody"] = body;
        }
        if let (Some((_, classes)), Some(PREDICT_REQUEST)) = (self.classes, doc.takes) {
            parameters.push(json!({
                "name": "top_k", "in": "query", "required": false,
                "description": format!(
                    "How many of the {classes} classes each row of \"labels\" lists, best \
                     first (default 5; more than {classes} lists them all)"
                ),
                "schema": {"type": "integer", "minimum": 1},
            }));
        }
        if doc.takes == Some(INFER_REQUEST) {
            parameters.push(json!({
                "name": "Inference-Header-Content-Length", "in": "header", "required": false,
                "description": "Binary tensor data extension: the length of the JSON header \
                                that starts the body; the binary data of the inputs follows it",
                "schema": {"type": "integer", "minimum": 0},
            }));
        }
        if !parameters.is_empty() {
            operation["parameters"] = Value::Array(parameters);
        }
        if self.auth && route.open {
            // Probes carry no key.
            operation["security"] = json!([]);
        }
        operation
    }

    fn request_body(&self, doc: &RouteDoc) -> Option<Value> {
        let schema = doc.takes?;
        let example = match schema {
            "PredictRequest" => self.predict_example(),
            INFER_REQUEST => self.infer_example(),
            _ => None,
        };
        let mut json_content =
            json!({"schema": {"$ref": format!("#/components/schemas/{schema}")}});
        if let Some(example) = example {
            json_content["example"] = example;
        }
        let mut content = json!({"application/json": json_content});
        if schema == INFER_REQUEST {
            content["application/octet-stream"] = json!({
                "schema": {"type": "string", "format": "binary"},
            });
        }
        if let (Some(image), PREDICT_REQUEST) = (self.image, schema) {
            let file = json!({
                "type": "string", "format": "binary",
                "description": format!("A PNG or JPEG image, for input '{}'", image.input),
            });
            content["image/png"] = json!({"schema": file});
            content["image/jpeg"] = json!({"schema": file});
            content["multipart/form-data"] = json!({"schema": {
                "type": "object",
                "description": "One file field (curl -F image=@cat.jpg); text fields are ignored",
                "required": ["image"],
                "properties": {"image": file},
            }});
        }
        Some(json!({"required": true, "content": content}))
    }

    fn responses(&self, route: &Route) -> Value {
        let doc = route.doc;
        let request_id = json!({"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}});
        let success = match doc.answer {
            Answer::Json {
                schema,
                description,
            } => {
                let mut answer = json!({
                    "description": description,
                    "headers": request_id,
                    "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}},
                });
                if doc.takes == Some(INFER_REQUEST) {
                    answer["headers"]["Inference-Header-Content-Length"] = json!({
                        "description": "With binary outputs: the length of the JSON header",
                        "schema": {"type": "string", "pattern": "^[0-9]+$"},
                    });
                    answer["content"]["application/octet-stream"] = json!({
                        "schema": {"type": "string", "format": "binary"},
                    });
                }
                answer
            }
            Answer::Text {
                media_type,
                description,
            } => json!({
                "description": description,
                "headers": request_id,
                "content": {media_type: {"schema": {"type": "string"}}},
            }),
        };
        let mut responses = json!({"200": success});
        let mut errors: Vec<&str> = vec!["405"];
        if has_model(route) {
            errors.push("404");
        }
        if doc.needs_model {
            errors.push("503");
        }
        if doc.takes.is_some() {
            errors.extend(["400", "408", "413", "500"]);
        }
        if doc.takes == Some(INFER_REQUEST) || doc.takes == Some(PREDICT_REQUEST) {
            errors.push("415");
        }
        if self.auth && !route.open {
            errors.push("401");
        }
        for status in errors {
            responses[status] = json!({"$ref": format!("#/components/responses/{status}")});
        }
        responses
    }

    fn components(&self) -> Value {
        let request_id = json!({"$ref": "#/components/headers/X-Request-Id"});
        let error = |description: &str, extra: Option<(&str, &str)>| {
            let mut headers = json!({"X-Request-Id": request_id});
            if let Some((name, about)) = extra {
                headers[name] = json!({
                    "description": about, "required": true, "schema": {"type": "string"},
                });
            }
            json!({
                "description": description,
                "headers": headers,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            })
        };
        json!({
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "--api-key"},
            },
            "headers": {
                "X-Request-Id": {
                    "description": "The request's id: the client's X-Request-Id when it sent \
                                    a usable one, else one made by the server",
                    "required": true,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 128},
                },
            },
            "responses": {
                "400": error("The request does not fit the model or the protocol", None),
                "401": error("No API key, or a wrong one", Some(("WWW-Authenticate", "Bearer realm=\"onnx-serve\""))),
                "404": error("No such model or version on this server", None),
                "405": error("The route does not take this method", Some(("Allow", "The methods it takes"))),
                "408": error("The body did not arrive within --read-timeout", None),
                "413": error("The body is over --max-body, or an image over --max-image-pixels", None),
                "415": error("An unsupported Content-Encoding, an image type other than PNG and JPEG, or an image for a model that takes none", None),
                "500": error("The model failed", None),
                "503": error(
                    "Not ready (loading or draining), or the queue is full",
                    Some(("Retry-After", "Seconds to wait before trying again")),
                ),
            },
            "schemas": self.schemas(),
        })
    }

    fn schemas(&self) -> Value {
        let signature = self.signature;
        let description = json!({
            "type": "object",
            "required": ["name", "datatype", "shape", "dims"],
            "properties": {
                "name": {"type": "string"},
                "datatype": {"enum": datatype_names()},
                "shape": {"type": "array", "items": {"type": "integer", "minimum": -1}},
                "dims": {"type": "string"},
                "class_labels": {
                    "description": "A ZipMap output's class labels, in column order: /predict and v1 answer one object per row, label to probability",
                    "type": "array",
                    "items": {"type": ["integer", "string"]},
                },
            },
        });
        let outputs: Vec<Value> = signature
            .outputs
            .iter()
            .map(|spec| {
                // Asked for with "classification", a numeric output comes back as BYTES.
                let (datatype, data) = match spec.datatype {
                    DataType::Bytes | DataType::Bool => (
                        json!({"const": spec.datatype.name()}),
                        element(spec.datatype, Side::Output),
                    ),
                    other => (
                        json!({"enum": [other.name(), "BYTES"]}),
                        json!({"anyOf": [element(other, Side::Output), {"type": "string", "description": "classification: score:index:label"}]}),
                    ),
                };
                json!({
                    "type": "object",
                    "required": ["name", "datatype", "shape"],
                    "properties": {
                        "name": {"const": spec.name},
                        "datatype": datatype,
                        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                        "data": {"type": "array", "items": data},
                        "parameters": {
                            "type": "object",
                            "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
                        },
                    },
                })
            })
            .collect();
        json!({
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {"type": "string", "description": "What went wrong, naming the input and the expected and received datatype or shape"},
                    "request_id": {"type": "string", "description": "The request's X-Request-Id"},
                },
                "additionalProperties": false,
            },
            "TensorDescription": description,
            "Document": {"type": "object"},
            "Healthz": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
            "Readyz": {"type": "object", "required": ["ready"], "properties": {"ready": {"const": true}}},
            "V2Live": {"type": "object", "required": ["live"], "properties": {"live": {"const": true}}},
            "Summary": {
                "type": "object",
                "required": ["name", "status", "ready", "inputs", "outputs", "request_example", "links"],
                "properties": {
                    "name": {"const": self.name},
                    "status": {"const": "alive"},
                    "ready": {"type": "boolean"},
                    "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/TensorDescription"}},
                    "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/TensorDescription"}},
                    "request_example": {"type": "string"},
                    "links": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            },
            "PredictRequest": {
                "type": "object",
                "required": ["inputs"],
                "properties": {"inputs": named_tensors(&signature.inputs, Side::Input)},
            },
            "PredictResponse": self.predict_response(),
            "InferRequest": self.infer_request(),
            "InferResponse": {
                "type": "object",
                "required": ["model_name", "model_version", "outputs"],
                "properties": {
                    "model_name": {"const": self.name},
                    "model_version": {"const": self.version},
                    "id": {"type": "string"},
                    "outputs": {"type": "array", "items": {"anyOf": outputs}},
                },
            },
            "V2ModelStats": model_stats(),
            "V1PredictRequest": self.v1_request(),
            "V1PredictResponse": self.v1_response(),
            "V2ServerMetadata": {
                "type": "object",
                "required": ["name", "version", "extensions"],
                "properties": {
                    "name": {"type": "string"},
                    "version": {"type": "string"},
                    "extensions": {"type": "array", "items": {"type": "string"}},
                },
            },
            "V2Ready": {
                "type": "object",
                "required": ["ready"],
                "properties": {"name": {"const": self.name}, "ready": {"type": "boolean"}},
            },
            "V2ModelMetadata": {
                "type": "object",
                "required": ["name", "versions", "platform", "inputs", "outputs"],
                "properties": {
                    "name": {"const": self.name},
                    "versions": {"type": "array", "items": {"type": "string"}},
                    "platform": {"type": "string"},
                    "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/TensorDescription"}},
                    "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/TensorDescription"}},
                },
            },
            "V2ModelConfig": {
                "type": "object",
                "required": ["name", "platform", "backend", "max_batch_size", "input", "output"],
                "properties": {
                    "name": {"const": self.name},
                    "platform": {"type": "string"},
                    "backend": {"type": "string"},
                    "max_batch_size": {"type": "integer", "minimum": 0},
                    "input": {"type": "array", "items": {"$ref": "#/components/schemas/ConfigTensor"}},
                    "output": {"type": "array", "items": {"$ref": "#/components/schemas/ConfigTensor"}},
                },
            },
            "ConfigTensor": {
                "type": "object",
                "required": ["name", "data_type", "dims"],
                "properties": {
                    "name": {"type": "string"},
                    "data_type": {"type": "string", "pattern": "^TYPE_"},
                    "dims": {"type": "array", "items": {"type": "integer", "minimum": -1}},
                },
            },
            "V1Status": {
                "type": "object",
                "required": ["name", "ready", "model_version_status"],
                "properties": {
                    "name": {"const": self.name},
                    "ready": {"type": "boolean"},
                    "model_version_status": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["version", "state", "status"],
                            "properties": {
                                "version": {"type": "string"},
                                "state": {"enum": ["LOADING", "AVAILABLE", "UNLOADING"]},
                                "status": {"type": "object"},
                            },
                        },
                    },
                },
            },
            "V1Metadata": {
                "type": "object",
                "required": ["model_spec", "metadata"],
                "properties": {
                    "model_spec": {"type": "object"},
                    "metadata": {"type": "object"},
                },
            },
        })
    }

    /// `POST /v2/models/{m}/infer`: each input by name, datatype and shape, its data flat
    /// (row-major) or nested. That the data fills the shape is checked by the server; a
    /// schema cannot say it.
    fn infer_request(&self) -> Value {
        let signature = self.signature;
        let inputs: Vec<Value> = signature
            .inputs
            .iter()
            .map(|spec| {
                let dims: Vec<Value> = spec
                    .shape
                    .iter()
                    .map(|dim| match dim {
                        Dim::Fixed(n) => json!({"const": n}),
                        Dim::Symbolic(_) => json!({"type": "integer", "minimum": 1}),
                    })
                    .collect();
                let rank = spec.shape.len();
                let element = element(spec.datatype, Side::Input);
                json!({
                    "type": "object",
                    "required": ["name", "datatype", "shape"],
                    "properties": {
                        "name": {"const": spec.name},
                        "datatype": {"const": spec.datatype.name()},
                        "shape": {
                            "type": "array", "minItems": rank, "maxItems": rank,
                            "prefixItems": dims, "items": false,
                        },
                        "data": {
                            "description": "The elements, row-major: flat, or nested as the shape",
                            "type": "array",
                            "items": {"anyOf": [element, {"type": "array"}]},
                        },
                        "parameters": {
                            "type": ["object", "null"],
                            "properties": {
                                "binary_data_size": {
                                    "description": "Binary tensor data extension: the input's bytes follow the JSON header, instead of data",
                                    "type": "integer", "minimum": 0,
                                },
                            },
                        },
                    },
                })
            })
            .collect();
        let names: Vec<&str> = signature.outputs.iter().map(|s| s.name.as_str()).collect();
        json!({
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "id": {"type": "string", "description": "Echoed in the response"},
                "parameters": {
                    "type": ["object", "null"],
                    "properties": {"binary_data_output": {"type": "boolean"}},
                },
                "inputs": {"type": "array", "minItems": 1, "items": {"anyOf": inputs}},
                "outputs": {
                    "type": ["array", "null"],
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"enum": names},
                            "parameters": {
                                "type": ["object", "null"],
                                "properties": {
                                    "binary_data": {"type": ["boolean", "null"]},
                                    "classification": {
                                        "description": "Triton's classification extension: answer the k best classes of each batch row as BYTES \"score:index:label\", best first (0: the output itself)",
                                        "type": ["integer", "null"], "minimum": 0,
                                    },
                                },
                            },
                        },
                    },
                },
            },
        })
    }

    /// `{"outputs": Y}`, and `"labels"` when the model's classes have labels.
    fn predict_response(&self) -> Value {
        let mut response = json!({
            "type": "object",
            "required": ["outputs"],
            "properties": {"outputs": named_tensors(&self.signature.outputs, Side::Output)},
            "additionalProperties": false,
        });
        if let Some((output, classes)) = self.classes {
            let spec = &self.signature.outputs[output];
            let score = match spec.datatype {
                DataType::Fp16 | DataType::Fp32 | DataType::Fp64 => {
                    element(spec.datatype, Side::Output)
                }
                _ => json!({"type": "integer"}),
            };
            response["required"] = json!(["outputs", "labels"]);
            response["properties"]["labels"] = json!({
                "description": format!(
                    "For each row of output '{}', its top_k best classes of {classes}, best first",
                    spec.name
                ),
                "type": "array",
                "items": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": classes,
                    "items": {
                        "type": "object",
                        "required": ["label", "index", "score"],
                        "properties": {
                            "label": {"type": "string"},
                            "index": {"type": "integer", "minimum": 0, "maximum": classes - 1},
                            "score": score,
                        },
                        "additionalProperties": false,
                    },
                },
            });
        }
        response
    }

    /// `instances` (one row per batch item) or `inputs` (as `/predict` takes them).
    fn v1_request(&self) -> Value {
        let inputs = &self.signature.inputs;
        let row = |spec: &TensorSpec| -> Value {
            match spec.shape.split_first() {
                Some((_, rest)) => nested(rest, element(spec.datatype, Side::Input), Side::Input),
                None => element(spec.datatype, Side::Input),
            }
        };
        let row = match inputs.as_slice() {
            [one] => row(one),
            many => {
                let properties: Map<String, Value> =
                    many.iter().map(|s| (s.name.clone(), row(s))).collect();
                json!({
                    "type": "object",
                    "properties": properties,
                    "required": many.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
                    "additionalProperties": false,
                })
            }
        };
        let mut instances = json!({"type": "array", "minItems": 1, "items": row});
        // Rows are stacked along the first dimension: a fixed one fixes their number.
        if let Some(Dim::Fixed(n)) = inputs.first().and_then(|s| s.shape.first()) {
            instances["minItems"] = json!(n);
            instances["maxItems"] = json!(n);
        }
        json!({
            "oneOf": [
                {"type": "object", "required": ["instances"], "not": {"required": ["inputs"]},
                 "properties": {"instances": instances}},
                {"type": "object", "required": ["inputs"], "not": {"required": ["instances"]},
                 "properties": {"inputs": named_tensors(inputs, Side::Input)}},
            ],
        })
    }

    fn v1_response(&self) -> Value {
        let outputs = &self.signature.outputs;
        let predictions = match outputs.as_slice() {
            [one] => tensor(one, Side::Output),
            many => {
                let properties: Map<String, Value> = many
                    .iter()
                    .map(|s| {
                        let rest = s.shape.get(1..).unwrap_or_default();
                        let row = match &s.map_keys {
                            Some(labels) => class_map(s, labels),
                            None => nested(rest, element(s.datatype, Side::Output), Side::Output),
                        };
                        (s.name.clone(), row)
                    })
                    .collect();
                json!({"type": "array", "items": {"type": "object", "properties": properties}})
            }
        };
        json!({
            "oneOf": [
                {"type": "object", "required": ["predictions"], "properties": {"predictions": predictions},
                 "additionalProperties": false},
                {"type": "object", "required": ["outputs"],
                 "properties": {"outputs": named_tensors(outputs, Side::Output)},
                 "additionalProperties": false},
            ],
        })
    }

    fn predict_example(&self) -> Option<Value> {
        let inputs = &self.signature.inputs;
        let examples: Option<Vec<Value>> = inputs.iter().map(example_tensor).collect();
        let mut examples = examples?;
        let value = match inputs.as_slice() {
            [_] => examples.pop()?,
            many => Value::Object(many.iter().map(|s| s.name.clone()).zip(examples).collect()),
        };
        Some(json!({"inputs": value}))
    }

    fn infer_example(&self) -> Option<Value> {
        let inputs: Option<Vec<Value>> = self
            .signature
            .inputs
            .iter()
            .map(|spec| {
                let shape = example_shape(spec)?;
                let count: usize = shape.iter().product();
                Some(json!({
                    "name": spec.name,
                    "datatype": spec.datatype.name(),
                    "shape": shape,
                    "data": vec![example_element(spec.datatype); count],
                }))
            })
            .collect();
        Some(json!({"inputs": inputs?}))
    }

    /// The page, with the data its script renders.
    fn page(&self) -> String {
        let describe = |specs: &[TensorSpec]| -> Vec<Value> {
            specs
                .iter()
                .map(|s| serde_json::to_value(s.describe()).expect("descriptions serialize"))
                .collect()
        };
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|route| {
                json!({
                    "method": route.method.to_ascii_uppercase(),
                    "path": route.template.replace("{model}", self.name),
                    "summary": route.doc.summary,
                    "open": !self.auth || route.open,
                })
            })
            .collect();
        let data = json!({
            "name": self.name,
            "version": self.version,
            "server_version": env!("CARGO_PKG_VERSION"),
            "tract_version": self.tract_version,
            "auth": self.auth,
            "inputs": describe(&self.signature.inputs),
            "outputs": describe(&self.signature.outputs),
            "routes": routes,
            "image": self.image.map(|i| i.input),
            "labels": self.classes.map(|(output, classes)| json!({
                "output": self.signature.outputs[output].name,
                "classes": classes,
            })),
        });
        PAGE.replacen(PAGE_DATA, &script_json(&data), 1)
    }
}

/// Triton's statistics (`api/v2/stats.rs`): every number an unsigned integer.
fn model_stats() -> Value {
    let duration = json!({
        "type": "object",
        "required": ["count", "ns"],
        "properties": {
            "count": {"type": "integer", "minimum": 0},
            "ns": {"type": "integer", "minimum": 0},
        },
    });
    let steps = [
        "success",
        "fail",
        "queue",
        "compute_input",
        "compute_infer",
        "compute_output",
    ];
    let inference_stats: Map<String, Value> = steps
        .iter()
        .chain(&["cache_hit", "cache_miss"])
        .map(|step| (step.to_string(), duration.clone()))
        .collect();
    json!({
        "type": "object",
        "required": ["model_stats"],
        "properties": {"model_stats": {"type": "array", "items": {
            "type": "object",
            "required": ["name", "version", "last_inference", "inference_count",
                         "execution_count", "inference_stats"],
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "last_inference": {"description": "Milliseconds since the Unix epoch; 0 before any", "type": "integer", "minimum": 0},
                "inference_count": {"description": "Rows predicted", "type": "integer", "minimum": 0},
                "execution_count": {"description": "Runs of the model", "type": "integer", "minimum": 0},
                "inference_stats": {
                    "type": "object",
                    "required": steps,
                    "properties": inference_stats,
                },
                "response_stats": {"type": "object"},
                "batch_stats": {"type": "array"},
                "memory_usage": {"type": "array"},
            },
        }}},
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Input,
    Output,
}

/// The smallest magnitudes that no longer round to a finite FP16 / FP32: the largest
/// finite value plus half a unit in the last place (a tie rounds to the even neighbour,
/// infinity). From there on every value is refused as out of range.
const FP16_OVERFLOW: f64 = 65520.0;
const FP32_OVERFLOW: f64 = 3.402_823_567_797_336_6e38; // 2^128 - 2^103

/// The schema of one element of a datatype. Inputs are bounded by what the datatype
/// holds (a number that does not fit is refused); float inputs take the non-finite
/// strings in any case and spelling the decoder accepts, outputs write them one way.
fn element(datatype: DataType, side: Side) -> Value {
    let integer =
        |min: Value, max: Value| json!({"type": "integer", "minimum": min, "maximum": max});
    let float = |bound: Option<f64>| {
        let mut number = json!({"type": "number"});
        if let (Some(bound), Side::Input) = (bound, side) {
            number["exclusiveMinimum"] = json!(-bound);
            number["exclusiveMaximum"] = json!(bound);
        }
        let non_finite = match side {
            Side::Input => json!({
                "type": "string",
                "pattern": "^[+-]?([Nn][Aa][Nn]|[Ii][Nn][Ff]([Ii][Nn][Ii][Tt][Yy])?)$",
            }),
            Side::Output => json!({"enum": ["NaN", "Infinity", "-Infinity"]}),
        };
        json!({"anyOf": [number, non_finite]})
    };
    match datatype {
        DataType::Bool => json!({"type": "boolean"}),
        DataType::Uint8 => integer(json!(0), json!(u8::MAX)),
        DataType::Uint16 => integer(json!(0), json!(u16::MAX)),
        DataType::Uint32 => integer(json!(0), json!(u32::MAX)),
        DataType::Uint64 => integer(json!(0), json!(u64::MAX)),
        DataType::Int8 => integer(json!(i8::MIN), json!(i8::MAX)),
        DataType::Int16 => integer(json!(i16::MIN), json!(i16::MAX)),
        DataType::Int32 => integer(json!(i32::MIN), json!(i32::MAX)),
        DataType::Int64 => integer(json!(i64::MIN), json!(i64::MAX)),
        DataType::Fp16 => float(Some(FP16_OVERFLOW)),
        DataType::Fp32 => float(Some(FP32_OVERFLOW)),
        DataType::Fp64 => float(None),
        DataType::Bytes if side == Side::Input => json!({
            "anyOf": [
                {"type": "string"},
                {"type": "object", "required": ["b64"], "additionalProperties": false,
                 "properties": {"b64": {"type": "string", "contentEncoding": "base64"}}},
            ],
        }),
        DataType::Bytes => json!({"type": "string"}),
    }
}

/// Nested arrays, outermost dimension first. An input's symbolic dimension needs at least
/// one item (the server refuses 0); an output's may have any number.
fn nested(shape: &[Dim], element: Value, side: Side) -> Value {
    shape.iter().rev().fold(element, |items, dim| {
        let mut array = json!({"type": "array", "items": items});
        match dim {
            Dim::Fixed(n) => {
                array["minItems"] = json!(n);
                array["maxItems"] = json!(n);
            }
            Dim::Symbolic(symbol) => {
                array["description"] = json!(format!("dimension {symbol}: any size"));
                if side == Side::Input {
                    array["minItems"] = json!(1);
                }
            }
        }
        array
    })
}

fn tensor(spec: &TensorSpec, side: Side) -> Value {
    if let (Some(labels), Side::Output) = (&spec.map_keys, side) {
        return class_maps(spec, labels);
    }
    let mut schema = nested(&spec.shape, element(spec.datatype, side), side);
    schema["title"] = json!(format!(
        "{} {} {}",
        spec.name,
        spec.datatype,
        spec.shape_text()
    ));
    schema
}

/// A ZipMap output as `/predict` and v1 answer it: one object per row, class label to
/// probability.
fn class_maps(spec: &TensorSpec, labels: &ClassLabels) -> Value {
    let row = class_map(spec, labels);
    let mut schema = match spec.shape.len() {
        1 => row,
        _ => json!({"type": "array", "items": row}),
    };
    schema["title"] = json!(format!(
        "{}: one object per row, class label to probability",
        spec.name
    ));
    schema
}

fn class_map(spec: &TensorSpec, labels: &ClassLabels) -> Value {
    let keys: Vec<String> = match labels {
        ClassLabels::Int64(labels) => labels.iter().map(i64::to_string).collect(),
        ClassLabels::Strings(labels) => labels.clone(),
    };
    let element = element(spec.datatype, Side::Output);
    let properties: Map<String, Value> =
        keys.iter().map(|k| (k.clone(), element.clone())).collect();
    json!({
        "type": "object",
        "properties": properties,
        "required": keys,
        "additionalProperties": false,
    })
}

/// `/predict`'s `inputs` and `outputs`: one tensor alone, or an object by name. A single
/// input may also be sent by name.
fn named_tensors(specs: &[TensorSpec], side: Side) -> Value {
    let by_name = || {
        let properties: Map<String, Value> = specs
            .iter()
            .map(|s| (s.name.clone(), tensor(s, side)))
            .collect();
        json!({
            "type": "object",
            "properties": properties,
            "required": specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            "additionalProperties": false,
        })
    };
    match (specs, side) {
        ([one], Side::Input) => json!({"anyOf": [tensor(one, side), by_name()]}),
        ([one], Side::Output) => tensor(one, side),
        _ => by_name(),
    }
}

fn datatype_names() -> Vec<&'static str> {
    DataType::ALL.iter().map(|d| d.name()).collect()
}

/// An example shape: symbolic dimensions of 1; `None` when it is too large to show.
fn example_shape(spec: &TensorSpec) -> Option<Vec<usize>> {
    let shape: Vec<usize> = spec
        .shape
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => *n,
            Dim::Symbolic(_) => 1,
        })
        .collect();
    let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))?;
    (count <= MAX_EXAMPLE_ELEMENTS).then_some(shape)
}

fn example_element(datatype: DataType) -> Value {
    match datatype {
        DataType::Bool => json!(false),
        DataType::Bytes => json!(""),
        dt if dt.is_float() => json!(0.0),
        _ => json!(0),
    }
}

/// A valid nested example of an input, or `None` when too large.
fn example_tensor(spec: &TensorSpec) -> Option<Value> {
    let shape = example_shape(spec)?;
    let leaf = example_element(spec.datatype);
    Some(
        shape
            .iter()
            .rev()
            .fold(leaf, |inner, &n| Value::Array(vec![inner; n])),
    )
}

/// JSON to put inside a `<script>`: `<`, `>` and `&` escaped so that no string in it can
/// end the script or open a comment.
fn script_json(value: &Value) -> String {
    serde_json::to_string(value)
        .expect("JSON values serialize")
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::test_spec as spec;

    fn digits() -> Signature {
        Signature {
            inputs: vec![spec(
                "input",
                vec![Dim::Symbolic("batch".into()), Dim::Fixed(64)],
            )],
            outputs: vec![spec(
                "probabilities",
                vec![Dim::Symbolic("batch".into()), Dim::Fixed(10)],
            )],
        }
    }

    const PREDICT: RouteDoc = RouteDoc::new("predict", "simple", "Predict", "PredictResponse", "")
        .takes("PredictRequest");
    const READY: RouteDoc = RouteDoc::new("v2_ready", "health", "Ready", "V2Ready", "");
    const METRICS: RouteDoc =
        RouteDoc::text("metrics", "operations", "Metrics", "text/plain", "").without_model();

    fn described(signature: &Signature) -> Described<'_> {
        let route = |method, template, open, doc| Route {
            method,
            template,
            open,
            doc,
        };
        Described {
            name: "digits",
            version: "1",
            signature,
            classes: None,
            image: None,
            auth: true,
            routes: vec![
                route("post", "/predict", false, &PREDICT),
                route("get", "/v2/models/{model}/ready", true, &READY),
                route("post", "/v1/models/{model}:predict", false, &PREDICT),
                route("get", "/metrics", false, &METRICS),
            ],
            tract_version: "0",
        }
    }

    #[test]
    fn shapes_become_nested_arrays_with_bounds_for_fixed_dims() {
        let signature = digits();
        let schema = tensor(&signature.inputs[0], Side::Input);
        assert_eq!(schema["type"], "array");
        assert_eq!(schema["minItems"], 1);
        assert!(schema.get("maxItems").is_none());
        assert_eq!(schema["items"]["minItems"], 64);
        assert_eq!(schema["items"]["maxItems"], 64);
        let element = &schema["items"]["items"]["anyOf"];
        assert_eq!(element[0]["type"], "number");
        assert_eq!(element[1]["type"], "string");
    }

    #[test]
    fn every_route_is_documented_with_its_versioned_form_and_its_errors() {
        let signature = digits();
        let document = described(&signature).document();
        let paths = document["paths"].as_object().unwrap();
        let predict = &paths["/predict"]["post"];
        assert_eq!(predict["operationId"], "predict");
        assert!(predict["requestBody"]["content"]["application/json"]["example"].is_object());
        for status in ["400", "401", "405", "408", "413", "500", "503"] {
            assert!(predict["responses"].get(status).is_some(), "{status}");
        }
        assert!(predict["responses"].get("404").is_none());
        let ready = &paths["/v2/models/{model}/versions/{version}/ready"]["get"];
        assert_eq!(ready["operationId"], "v2_ready_versioned");
        assert!(ready["responses"].get("404").is_some());
        assert!(ready["responses"].get("401").is_none(), "open to probes");
        assert_eq!(ready["security"], json!([]));
        assert!(paths.contains_key("/v1/models/{model}/versions/{version}:predict"));
        let metrics = &paths["/metrics"]["get"]["responses"];
        assert!(metrics["200"]["content"]["text/plain"].is_object());
        assert!(metrics.get("503").is_none());
        assert_eq!(document["security"], json!([{"bearer": []}]));
    }

    #[test]
    fn float_bounds_are_where_the_decoder_starts_refusing() {
        use crate::tensor::json::{Element, Scalar};
        use half::f16;
        fn check<E: Element>(bound: f64, below: f64) {
            for sign in [1.0, -1.0] {
                assert!(
                    E::from_scalar(Scalar::Float(sign * bound)).is_err(),
                    "{bound}"
                );
                assert!(
                    E::from_scalar(Scalar::Float(sign * below)).is_ok(),
                    "{below}"
                );
            }
        }
        // half converts through f32, so values within 2^-9 of the FP16 bound already
        // overflow; the schema's bound is the one past which all do.
        check::<f16>(FP16_OVERFLOW, 65519.99);
        check::<f32>(FP32_OVERFLOW, f64::from_bits(FP32_OVERFLOW.to_bits() - 1));
        assert_eq!(FP32_OVERFLOW, 2f64.powi(128) - 2f64.powi(103));
    }

    #[test]
    fn the_example_fits_the_signature() {
        let signature = digits();
        let example = described(&signature).predict_example().unwrap();
        let rows = example["inputs"].as_array().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].as_array().unwrap().len(), 64);
    }

    #[test]
    fn images_and_labels_add_media_types_top_k_and_labels() {
        let signature = digits();
        let mut described = described(&signature);
        let plain = described.document();
        let predict = &plain["paths"]["/predict"]["post"];
        assert!(predict["requestBody"]["content"].get("image/png").is_none());
        assert!(predict.get("parameters").is_none());
        assert!(
            plain["components"]["schemas"]["PredictResponse"]["properties"]
                .get("labels")
                .is_none()
        );

        described.classes = Some((0, 10));
        described.image = Some(ImageDoc { input: "input" });
        let document = described.document();
        let predict = &document["paths"]["/predict"]["post"];
        let content = &predict["requestBody"]["content"];
        for media in [
            "application/json",
            "image/png",
            "image/jpeg",
            "multipart/form-data",
        ] {
            assert!(content.get(media).is_some(), "{media}");
        }
        assert_eq!(predict["parameters"][0]["name"], "top_k");
        assert!(predict["responses"].get("415").is_some());
        let response = &document["components"]["schemas"]["PredictResponse"];
        assert_eq!(response["required"], json!(["outputs", "labels"]));
        let class = &response["properties"]["labels"]["items"]["items"];
        assert_eq!(class["properties"]["index"]["maximum"], 9);
    }

    #[test]
    fn the_page_data_cannot_close_the_script() {
        let text = script_json(&json!({"name": "</script><b>&"}));
        assert!(!text.contains('<') && !text.contains('&'), "{text}");
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["name"], "</script><b>&");
    }
}
