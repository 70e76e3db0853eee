using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace SkTuning.Gpu.Tests.Support;

/// <summary>Runs an ONNX model with ONNX Runtime's CPU provider on int64 BERT inputs.</summary>
internal static class OrtRunner
{
    /// <summary>Every float output by name: (data, dims).</summary>
    public static Dictionary<string, (float[] Data, int[] Dims)> Run(byte[] model, long[,] ids, long[,] mask, long[,] types)
    {
        using var session = new InferenceSession(model);
        int b = ids.GetLength(0), t = ids.GetLength(1);
        DenseTensor<long> Tensor(long[,] a)
        {
            var data = new long[b * t];
            for (int i = 0; i < b; i++)
                for (int j = 0; j < t; j++) data[i * t + j] = a[i, j];
            return new DenseTensor<long>(data, [b, t]);
        }
        var inputs = new List<NamedOnnxValue>
        {
            NamedOnnxValue.CreateFromTensor("input_ids", Tensor(ids)),
            NamedOnnxValue.CreateFromTensor("attention_mask", Tensor(mask)),
            NamedOnnxValue.CreateFromTensor("token_type_ids", Tensor(types)),
        };
        using var results = session.Run(inputs);
        var outputs = new Dictionary<string, (float[], int[])>();
        foreach (var r in results)
        {
            var tensor = r.AsTensor<float>();
            outputs[r.Name] = (tensor.ToArray(), tensor.Dimensions.ToArray());
        }
        return outputs;
    }

    /// <summary>The <c>last_hidden_state</c> output.</summary>
    public static (float[] Data, int[] Dims) LastHiddenState(byte[] model, long[,] ids, long[,] mask, long[,] types) =>
        Run(model, ids, mask, types)["last_hidden_state"];
}
