// TEMPORARY until the importers branch lands.
namespace SkTuning.Gpu.Import { internal static class ModelImporter { internal static ImportedModel Import(SkTuning.Gpu.Onnx.OnnxModel m) => BertImporter.Import(m); } }
