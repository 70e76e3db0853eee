// TEMPORARY: compile stubs until the kernels branch lands. Delete before merging.
using SkTuning.Gpu.Engine;
namespace SkTuning.Gpu.Kernels { internal static class Rope { internal static (float[] Cos, float[] Sin) Tables(int p, int r, float t) => throw new NotImplementedException(); } }
namespace SkTuning.Gpu.Engine {
internal static class TempStubs {
 public static void RmsNormForward(this Backend b, DeviceView<float> x, DeviceView<float> gamma, DeviceView<float> y, DeviceView<float> rstd, int rows, int dim, float epsilon) => throw new NotImplementedException();
 public static void RmsNormBackward(this Backend b, DeviceView<float> dy, DeviceView<float> x, DeviceView<float> gamma, DeviceView<float> rstd, DeviceView<float> dx, DeviceView<float> dGamma, int rows, int dim) => throw new NotImplementedException();
 public static void GeluTanhForward(this Backend b, DeviceView<float> x, DeviceView<float> y) => throw new NotImplementedException();
 public static void GeluTanhBackward(this Backend b, DeviceView<float> dy, DeviceView<float> x, DeviceView<float> dx) => throw new NotImplementedException();
 public static void SwiGluForward(this Backend b, DeviceView<float> gateUp, DeviceView<float> y, int rows, int ffn) => throw new NotImplementedException();
 public static void SwiGluBackward(this Backend b, DeviceView<float> dy, DeviceView<float> gateUp, DeviceView<float> dGateUp, int rows, int ffn) => throw new NotImplementedException();
 public static void RopeForward(this Backend b, DeviceView<float> x, DeviceView<int> positions, DeviceView<float> cos, DeviceView<float> sin, int rows, int stride, int heads, int headDim, int rotaryDim) => throw new NotImplementedException();
 public static void RopeBackward(this Backend b, DeviceView<float> dx, DeviceView<int> positions, DeviceView<float> cos, DeviceView<float> sin, int rows, int stride, int heads, int headDim, int rotaryDim) => throw new NotImplementedException();
 public static void EmbeddingForward(this Backend b, DeviceView<int> ids, DeviceView<int> types, DeviceView<int> positions, DeviceView<float> wte, DeviceView<float> wpe, DeviceView<float> wtt, DeviceView<float> output, int batch, int seqLen, int dim) => throw new NotImplementedException();
 public static void EmbeddingBackward(this Backend b, DeviceView<int> ids, DeviceView<int> types, DeviceView<int> positions, DeviceView<float> dOutput, DeviceView<float> dWte, DeviceView<float> dWpe, DeviceView<float> dWtt, int batch, int seqLen, int dim) => throw new NotImplementedException();
}}
namespace SkTuning.Gpu.Kernels { internal static class RmsNorm { internal static void ForwardReference(ReadOnlySpan<double> x, ReadOnlySpan<double> g, Span<double> y, Span<double> rstd, int rows, int dim, double eps) => throw new NotImplementedException(); } }
namespace SkTuning.Gpu.Import { internal static class ModelImporter { internal static ImportedModel Import(SkTuning.Gpu.Onnx.OnnxModel m) => BertImporter.Import(m); } }
