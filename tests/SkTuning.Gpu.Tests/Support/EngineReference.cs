using SkTuning.Gpu.Engine;
using SkTuning.Gpu.Import;
using SkTuning.Gpu.Kernels;
using AttentionKernel = SkTuning.Gpu.Kernels.Attention;

namespace SkTuning.Gpu.Tests.Support;

/// <summary>LoRA for the fp64 reference: A/B tensors by engine name, α/r, and the training-mode dropout (p, seed).</summary>
internal sealed record LoraReference(IReadOnlyDictionary<string, double[]> Tensors, int Rank, double Scale, float Dropout = 0f, ulong Seed = 0);

/// <summary>
/// d(loss)/d(everything) of the fp64 reference: every weight (named as <see cref="EngineParameters.WeightTensors"/>), the
/// prompt [m_p, d], the prefix [L, 2, m, kvDim] (both summed over the batch) and the LoRA tensors (when LoRA is on).
/// </summary>
internal sealed record ReferenceGradients(Dictionary<string, double[]> Weights, double[] Prompt, double[] Prefix, Dictionary<string, double[]> Lora);

/// <summary>
/// The engine's forward and backward in fp64, composed only of the kernels' fp64 references (llm.c style), for every
/// family the spec describes: post-norm encoders (BERT), pre-norm causal decoders (GPT-2: LayerNorm, GELU-tanh,
/// absolute positions; LLaMA: RMSNorm, SwiGLU, RoPE, grouped KV heads; BLOOM: embedding LayerNorm, ALiBi) and parallel
/// ones (Falcon: one or two norms, multi-query or grouped KV heads; Phi: partial rotary), with a final norm in pre-norm
/// and parallel models. The
/// ground truth for the fast engine's forward and gradients; its own backward is checked against central differences of
/// its forward. Decoder positions follow the documented rule, written here independently of the engine: the prefix
/// holds 0..m−1 (its keys given unrotated and rotated here), prompt rows m.., and each example's tokens continue after
/// them skipping padding (offset + cumsum(mask) − 1, leading padding at the offset).
/// </summary>
internal static class EngineReference
{
    /// <summary>Final hidden states [B, m_p + T, d] with an optional prompt [m_p, d] and prefix [L, 2, m, kvDim].</summary>
    public static double[] Forward(ModelWeights w, TokenBatch batch, double[] prompt, double[] prefix) =>
        Forward(w.Spec, Tensors(w), batch, prompt, prefix);

    /// <summary>The model's weights in fp64, named as <see cref="EngineParameters.WeightTensors"/> (perturb these for finite differences).</summary>
    public static Dictionary<string, double[]> Tensors(ModelWeights w) =>
        EngineParameters.PretrainedTensors(w).ToDictionary(kv => kv.Key, kv => TestData.ToDouble(kv.Value));

    /// <summary>The forward from named fp64 weights, with optional LoRA on query/value.</summary>
    public static double[] Forward(ModelSpec s, IReadOnlyDictionary<string, double[]> t, TokenBatch batch, double[] prompt, double[] prefix,
        LoraReference? lora = null) => new Pass(s, t, batch, prompt, prefix, lora).Output;

    /// <summary>The forward's output and the gradients of Σ dOut∘output.</summary>
    public static (double[] Output, ReferenceGradients Gradients) ForwardBackward(ModelSpec s, IReadOnlyDictionary<string, double[]> t,
        TokenBatch batch, double[] prompt, double[] prefix, double[] dOut, LoraReference? lora = null)
    {
        var pass = new Pass(s, t, batch, prompt, prefix, lora);
        return (pass.Output, pass.Backward(dOut));
    }

    /// <summary>
    /// Positions of the tokens [B·T] (for the position table) and of the rows [B·(m_p+T)] (for RoPE and ALiBi): encoders
    /// number tokens 0..T−1, RoBERTa from padding_idx + 1 over the real tokens (padding: padding_idx), and have no rotary
    /// rows; causal models as described on the class.
    /// </summary>
    public static (int[] Tokens, int[] Rows) Positions(ModelSpec s, TokenBatch batch, int prefixLen, int promptLen)
    {
        int B = batch.Batch, T = batch.SeqLen, S = promptLen + T;
        var tokens = new int[B * T];
        var rows = new int[B * S];
        for (int b = 0; b < B; b++)
        {
            for (int i = 0; i < promptLen; i++) rows[b * S + i] = prefixLen + i;
            int real = 0;
            for (int t = 0; t < T; t++)
            {
                if (batch.Mask[b * T + t] != 0) real++;
                int p = s.Causal ? prefixLen + promptLen + Math.Max(real - 1, 0)
                    : s.PositionPaddingId is { } pad ? (batch.Mask[b * T + t] != 0 ? pad + real : pad)
                    : t;
                tokens[b * T + t] = p;
                rows[b * S + promptLen + t] = p;
            }
        }
        return (tokens, rows);
    }

    /// <summary>One layer's saved activations.</summary>
    private sealed class LayerTape
    {
        public double[] X = [];            // layer input
        public double[] AttnIn = [];       // what attention reads: X (post-norm) or AttnNorm(X) (pre-norm, parallel)
        public double[] AttnSum = [];      // post: X + Attn; pre: h = X + Attn
        public double[] AttnMean = [], AttnRstd = [];
        public double[] FfnIn = [];        // what the FFN reads: AttnNorm(AttnSum) (post), FfnNorm(h) (pre), FfnNorm(X) or AttnIn (parallel)
        public double[] FfnSum = [];       // post: FfnIn + FFN (before FfnNorm)
        public double[] FfnMean = [], FfnRstd = [];
        public double[] Qkv = [], PrefixK = [], PrefixV = [], Probs = [], Context = [], Up = [], Act = [];
        public readonly double[][] LoraInput = new double[2][], LoraT = new double[2][];
    }

    /// <summary>One forward (activations kept) and its backward.</summary>
    private sealed class Pass
    {
        private readonly ModelSpec _s;
        private readonly IReadOnlyDictionary<string, double[]> _t;
        private readonly TokenBatch _batch;
        private readonly LoraReference? _lora;
        private readonly int _d, _kv, _qkvw, _fin, _B, _T, _S, _rows, _m, _mp;
        private readonly int[] _tokenPositions, _rowPositions, _prefixPositions;
        private readonly double[] _cos = [], _sin = [], _mask;
        private readonly double[]? _alibiSlopes;
        private readonly AttentionShape _shape;
        private readonly LayerTape[] _layers;
        private readonly double[] _embSum, _embMean, _embRstd, _final = [], _finalMean, _finalRstd;
        private Dictionary<string, double[]> _g = [];
        private Dictionary<string, double[]> _gl = [];

        public double[] Output { get; }

        public Pass(ModelSpec s, IReadOnlyDictionary<string, double[]> t, TokenBatch batch, double[] prompt, double[] prefix, LoraReference? lora)
        {
            _s = s; _t = t; _batch = batch; _lora = lora;
            _d = s.Hidden; _kv = s.KvDim; _qkvw = EngineParameters.QkvWidth(s); _fin = EngineParameters.FfnInputWidth(s);
            _B = batch.Batch; _T = batch.SeqLen; _mp = prompt.Length / _d; _m = prefix.Length / (2 * s.Layers * _kv);
            _S = _mp + _T; _rows = _B * _S;
            (_tokenPositions, _rowPositions) = Positions(s, batch, _m, _mp);
            _prefixPositions = Enumerable.Range(0, _m).ToArray();
            if (s.Positions == PositionKind.Rope)
            {
                var (cos, sin) = Rope.Tables(s.MaxPositions, s.RotaryDim, s.RopeTheta);
                (_cos, _sin) = (TestData.ToDouble(cos), TestData.ToDouble(sin));
            }
            if (s.Positions == PositionKind.Alibi) _alibiSlopes = TestData.ToDouble(AttentionKernel.AlibiSlopes(s.Heads));
            _mask = new double[_rows];
            for (int b = 0; b < _B; b++)
                for (int p = 0; p < _S; p++) _mask[b * _S + p] = p < _mp ? 1 : batch.Mask[b * _T + p - _mp];
            _shape = new AttentionShape(_B, _S, s.Heads, s.HeadSize, _m, s.KvHeads);

            int tok = _B * _T;
            _embSum = new double[tok * _d];
            Embedding.ForwardReference(batch.Ids, batch.Types, _tokenPositions, t[EngineParameters.WordEmbeddings], T(EngineParameters.PositionEmbeddings),
                T(EngineParameters.TokenTypeEmbeddings), _embSum, _B, _T, _d);
            var x0 = _embSum;
            (_embMean, _embRstd) = (new double[tok], new double[tok]);
            if (s.EmbeddingNorm)
            {
                x0 = new double[tok * _d];
                Norm(EngineParameters.EmbeddingNormGamma, EngineParameters.EmbeddingNormBeta, _embSum, x0, _embMean, _embRstd, tok);
            }
            var x = x0;
            if (_mp > 0)
            {
                x = new double[_rows * _d];
                Prepend.ForwardReference(prompt, x0, x, _B, _mp, _T, _d);
            }
            _layers = new LayerTape[s.Layers];
            for (int l = 0; l < s.Layers; l++)
            {
                var la = _layers[l] = new LayerTape { X = x };
                la.PrefixK = prefix.AsSpan(2 * l * _m * _kv, _m * _kv).ToArray();
                la.PrefixV = prefix.AsSpan((2 * l + 1) * _m * _kv, _m * _kv).ToArray();
                x = LayerForward(l, la);
            }
            (_finalMean, _finalRstd) = (new double[_rows], new double[_rows]);
            if (s.HasFinalNorm)
            {
                _final = new double[_rows * _d];
                Norm(EngineParameters.FinalNormGamma, EngineParameters.FinalNormBeta, x, _final, _finalMean, _finalRstd, _rows);
                Output = _final;
            }
            else Output = x;
            _hiddenL = x;
        }

        private readonly double[] _hiddenL;

        /// <summary>A weight, or empty when the model lacks it (a bias, β, a table).</summary>
        private double[] T(string name) => _t.TryGetValue(name, out var v) ? v : [];

        /// <summary>A weight's gradient, or empty when the model lacks it.</summary>
        private double[] G(string name) => _g.TryGetValue(name, out var v) ? v : [];

        private void Norm(string gamma, string beta, double[] x, double[] y, double[] mean, double[] rstd, int rows)
        {
            if (_s.Norm == NormKind.LayerNorm) LayerNorm.ForwardReference(x, _t[gamma], _t[beta], y, mean, rstd, rows, _d, _s.Epsilon);
            else RmsNorm.ForwardReference(x, _t[gamma], y, rstd, rows, _d, _s.Epsilon);
        }

        /// <summary>dx += Normᵀ·dy; γ/β gradients accumulate.</summary>
        private void NormBackward(string gamma, string beta, double[] dy, double[] x, double[] mean, double[] rstd, double[] dx, int rows)
        {
            if (_s.Norm == NormKind.LayerNorm) LayerNorm.BackwardReference(dy, x, _t[gamma], mean, rstd, dx, G(gamma), G(beta), rows, _d);
            else RmsNorm.BackwardReference(dy, x, _t[gamma], rstd, dx, G(gamma), rows, _d);
        }

        private double[] LayerForward(int l, LayerTape la)
        {
            var n = EngineParameters.LayerNames(l);
            int rows = _rows, d = _d;
            (la.AttnMean, la.AttnRstd, la.FfnMean, la.FfnRstd) = (new double[rows], new double[rows], new double[rows], new double[rows]);
            var output = new double[rows * d];
            if (_s.NormPlacement == NormPlacement.Post)
            {
                // h = AttnNorm(x + Attn(x)); out = FfnNorm(h + FFN(h))
                la.AttnIn = la.X;
                la.AttnSum = Attention(l, la);
                Residual(la.X, la.AttnSum);
                la.FfnIn = new double[rows * d];
                Norm(n.AttentionNormGamma, n.AttentionNormBeta, la.AttnSum, la.FfnIn, la.AttnMean, la.AttnRstd, rows);
                la.FfnSum = FeedForward(l, la);
                Residual(la.FfnIn, la.FfnSum);
                Norm(n.FfnNormGamma, n.FfnNormBeta, la.FfnSum, output, la.FfnMean, la.FfnRstd, rows);
            }
            else if (_s.NormPlacement == NormPlacement.Parallel)
            {
                // out = x + Attn(AttnNorm(x)) + FFN(FfnNorm(x)), FfnNorm = AttnNorm when shared
                la.AttnIn = new double[rows * d];
                Norm(n.AttentionNormGamma, n.AttentionNormBeta, la.X, la.AttnIn, la.AttnMean, la.AttnRstd, rows);
                la.FfnIn = la.AttnIn;
                if (!_s.SharedNorm)
                {
                    la.FfnIn = new double[rows * d];
                    Norm(n.FfnNormGamma, n.FfnNormBeta, la.X, la.FfnIn, la.FfnMean, la.FfnRstd, rows);
                }
                output = Attention(l, la);
                Residual(FeedForward(l, la), output);
                Residual(la.X, output);
            }
            else
            {
                // h = x + Attn(AttnNorm(x)); out = h + FFN(FfnNorm(h))
                la.AttnIn = new double[rows * d];
                Norm(n.AttentionNormGamma, n.AttentionNormBeta, la.X, la.AttnIn, la.AttnMean, la.AttnRstd, rows);
                la.AttnSum = Attention(l, la);
                Residual(la.X, la.AttnSum);
                la.FfnIn = new double[rows * d];
                Norm(n.FfnNormGamma, n.FfnNormBeta, la.AttnSum, la.FfnIn, la.FfnMean, la.FfnRstd, rows);
                output = FeedForward(l, la);
                Residual(la.AttnSum, output);
            }
            return output;
        }

        private static void Residual(double[] x, double[] y)
        {
            for (int i = 0; i < y.Length; i++) y[i] += x[i];
        }

        private bool Rotary => _s.Positions == PositionKind.Rope;

        private double[] Attention(int l, LayerTape la)
        {
            var n = EngineParameters.LayerNames(l);
            int rows = _rows, d = _d;
            la.Qkv = new double[rows * _qkvw];
            Gemm.NNReference(rows, _qkvw, d, la.AttnIn, _t[n.QkvWeight], la.Qkv, T(n.QkvBias));
            if (_lora is not null) LoraForward(l, la);
            var pk = la.PrefixK;
            if (Rotary)
            {
                Rope.ForwardReference(la.Qkv, _rowPositions, _cos, _sin, rows, _qkvw, _s.Heads + _s.KvHeads, _s.HeadSize, _s.RotaryDim);
                if (_m > 0)
                {
                    pk = (double[])pk.Clone();
                    Rope.ForwardReference(pk, _prefixPositions, _cos, _sin, _m, _kv, _s.KvHeads, _s.HeadSize, _s.RotaryDim);
                }
            }
            la.PrefixK = pk; // from here on the rotated keys, as attention saw them
            la.Context = new double[rows * d];
            la.Probs = new double[_shape.ProbsLength];
            // ALiBi: token keys at their rows' positions, prefix keys at 0..m−1 (the kernel's numbering).
            AttentionKernel.ForwardReference(la.Qkv, pk, la.PrefixV, _mask, la.Context, la.Probs, _shape, _s.MaskValue, _s.Causal,
                _alibiSlopes, _alibiSlopes is null ? null : _rowPositions);
            var o = new double[rows * d];
            Gemm.NNReference(rows, d, d, la.Context, _t[n.AttentionOutputWeight], o, T(n.AttentionOutputBias));
            return o;
        }

        private double[] FeedForward(int l, LayerTape la)
        {
            var n = EngineParameters.LayerNames(l);
            int rows = _rows, d = _d, F = _s.FfnSize;
            la.Up = new double[rows * _fin];
            Gemm.NNReference(rows, _fin, d, la.FfnIn, _t[n.FfnUpWeight], la.Up, T(n.FfnUpBias));
            la.Act = new double[rows * F];
            switch (_s.Activation)
            {
                case ActivationKind.GeluErf: Gelu.ForwardReference(la.Up, la.Act); break;
                case ActivationKind.GeluTanh: GeluTanh.ForwardReference(la.Up, la.Act); break;
                default: SwiGlu.ForwardReference(la.Up, la.Act, rows, F); break;
            }
            var f = new double[rows * d];
            Gemm.NNReference(rows, d, F, la.Act, _t[n.FfnDownWeight], f, T(n.FfnDownBias));
            return f;
        }

        /// <summary>Columns of q (j = 0) or v (j = 1) in the fused qkv row, and their width.</summary>
        private (int Column0, int Width) LoraTarget(int j) => j == 0 ? (0, _s.Heads * _s.HeadSize) : (_s.Heads * _s.HeadSize + _kv, _kv);

        /// <summary>qkv[:, q | v columns] += scale·dropout(x)·A·B, the dropout masks drawn as the engine draws them.</summary>
        private void LoraForward(int l, LayerTape la)
        {
            var lora = _lora!;
            int d = _d, r = lora.Rank, rows = _rows;
            var (qa, qb, va, vb) = EngineParameters.LoraNames(l);
            foreach (var (j, a, b) in new[] { (0, qa, qb), (1, va, vb) })
            {
                var (column0, width) = LoraTarget(j);
                var input = la.AttnIn;
                if (lora.Dropout > 0)
                {
                    input = new double[input.Length];
                    var (seed, offset) = Sublayers.LoraDropoutStream(lora.Seed, l, j, rows, d);
                    Dropout.ForwardReference(la.AttnIn, input, lora.Dropout, seed, offset);
                }
                var tt = new double[rows * r];
                Gemm.NNReference(rows, r, d, input, lora.Tensors[a], tt);
                var u = new double[rows * width];
                Gemm.NNReference(rows, width, r, tt, lora.Tensors[b], u);
                ColumnBlock.ForwardReference(u, la.Qkv, rows, width, _qkvw, column0, lora.Scale);
                la.LoraInput[j] = input;
                la.LoraT[j] = tt;
            }
        }

        public ReferenceGradients Backward(double[] dOut)
        {
            int rows = _rows, d = _d, L = _s.Layers;
            if (dOut.Length != rows * d) throw new ArgumentException($"dOut has {dOut.Length} values, expected {rows * d}");
            _g = EngineParameters.WeightTensors(_s).ToDictionary(x => x.Name, x => new double[x.Shape.Aggregate(1, (a, b) => a * b)]);
            _gl = _lora?.Tensors.ToDictionary(kv => kv.Key, kv => new double[kv.Value.Length]) ?? [];
            var dPrefix = new double[2 * L * _m * _kv];
            var dx = (double[])dOut.Clone();
            if (_s.HasFinalNorm)
            {
                dx = new double[rows * d];
                NormBackward(EngineParameters.FinalNormGamma, EngineParameters.FinalNormBeta, dOut, _hiddenL, _finalMean, _finalRstd, dx, rows);
            }
            for (int l = L - 1; l >= 0; l--) dx = LayerBackward(l, _layers[l], dx, dPrefix);
            var dPrompt = new double[_mp * d];
            int tok = _B * _T;
            var dTok = dx;
            if (_mp > 0)
            {
                Prepend.PromptGradientReference(dx, dPrompt, _B, _mp, _T, d);
                dTok = new double[tok * d];
                Prepend.InputGradientReference(dx, dTok, _B, _mp, _T, d);
            }
            var dSum = dTok;
            if (_s.EmbeddingNorm)
            {
                dSum = new double[tok * d];
                NormBackward(EngineParameters.EmbeddingNormGamma, EngineParameters.EmbeddingNormBeta, dTok, _embSum, _embMean, _embRstd, dSum, tok);
            }
            Embedding.BackwardReference(_batch.Ids, _batch.Types, _tokenPositions, dSum, G(EngineParameters.WordEmbeddings),
                G(EngineParameters.PositionEmbeddings), G(EngineParameters.TokenTypeEmbeddings), _B, _T, d);
            return new ReferenceGradients(_g, dPrompt, dPrefix, _gl);
        }

        /// <summary>d(loss)/d(layer input) from d(loss)/d(layer output).</summary>
        private double[] LayerBackward(int l, LayerTape la, double[] dOut, double[] dPrefix)
        {
            var n = EngineParameters.LayerNames(l);
            int rows = _rows, d = _d;
            if (_s.NormPlacement == NormPlacement.Post)
            {
                var dFfnSum = new double[rows * d];
                NormBackward(n.FfnNormGamma, n.FfnNormBeta, dOut, la.FfnSum, la.FfnMean, la.FfnRstd, dFfnSum, rows);
                var dh = (double[])dFfnSum.Clone();
                FeedForwardBackward(l, la, dFfnSum, dh);
                var dAttnSum = new double[rows * d];
                NormBackward(n.AttentionNormGamma, n.AttentionNormBeta, dh, la.AttnSum, la.AttnMean, la.AttnRstd, dAttnSum, rows);
                var dx = (double[])dAttnSum.Clone();
                AttentionBackward(l, la, dAttnSum, dx, dPrefix);
                return dx;
            }
            else if (_s.NormPlacement == NormPlacement.Parallel)
            {
                // Both branches read the norm output(s) of x: a shared norm gets the sum of their gradients.
                var dAttnIn = new double[rows * d];
                AttentionBackward(l, la, dOut, dAttnIn, dPrefix);
                var dFfnIn = _s.SharedNorm ? dAttnIn : new double[rows * d];
                FeedForwardBackward(l, la, dOut, dFfnIn);
                var dx = (double[])dOut.Clone();
                NormBackward(n.AttentionNormGamma, n.AttentionNormBeta, dAttnIn, la.X, la.AttnMean, la.AttnRstd, dx, rows);
                if (!_s.SharedNorm) NormBackward(n.FfnNormGamma, n.FfnNormBeta, dFfnIn, la.X, la.FfnMean, la.FfnRstd, dx, rows);
                return dx;
            }
            else
            {
                var dh = (double[])dOut.Clone();
                var dFfnIn = new double[rows * d];
                FeedForwardBackward(l, la, dOut, dFfnIn);
                NormBackward(n.FfnNormGamma, n.FfnNormBeta, dFfnIn, la.AttnSum, la.FfnMean, la.FfnRstd, dh, rows);
                var dAttnIn = new double[rows * d];
                AttentionBackward(l, la, dh, dAttnIn, dPrefix);
                var dx = (double[])dh.Clone();
                NormBackward(n.AttentionNormGamma, n.AttentionNormBeta, dAttnIn, la.X, la.AttnMean, la.AttnRstd, dx, rows);
                return dx;
            }
        }

        /// <summary>dInput += Attnᵀ·dO; the prefix, weight and LoRA gradients accumulate.</summary>
        private void AttentionBackward(int l, LayerTape la, double[] dO, double[] dInput, double[] dPrefix)
        {
            var n = EngineParameters.LayerNames(l);
            int rows = _rows, d = _d;
            var dctx = new double[rows * d];
            Gemm.NTReference(rows, d, d, dO, _t[n.AttentionOutputWeight], dctx);
            Gemm.TNReference(d, d, rows, la.Context, dO, G(n.AttentionOutputWeight), accumulate: true);
            if (G(n.AttentionOutputBias).Length > 0) Bias.BackwardReference(dO, G(n.AttentionOutputBias), rows, d);
            var dqkv = new double[rows * _qkvw];
            var dpk = new double[_m * _kv];
            var dpv = new double[_m * _kv];
            AttentionKernel.BackwardReference(dctx, la.Qkv, la.PrefixK, la.PrefixV, la.Probs, dqkv, dpk, dpv, _shape);
            if (Rotary)
            {
                Rope.BackwardReference(dqkv, _rowPositions, _cos, _sin, rows, _qkvw, _s.Heads + _s.KvHeads, _s.HeadSize, _s.RotaryDim);
                if (_m > 0) Rope.BackwardReference(dpk, _prefixPositions, _cos, _sin, _m, _kv, _s.KvHeads, _s.HeadSize, _s.RotaryDim);
            }
            int block = _m * _kv;
            for (int i = 0; i < block; i++)
            {
                dPrefix[2 * l * block + i] += dpk[i];
                dPrefix[(2 * l + 1) * block + i] += dpv[i];
            }
            Gemm.TNReference(d, _qkvw, rows, la.AttnIn, dqkv, G(n.QkvWeight), accumulate: true);
            if (G(n.QkvBias).Length > 0) Bias.BackwardReference(dqkv, G(n.QkvBias), rows, _qkvw);
            Gemm.NTReference(rows, d, _qkvw, dqkv, _t[n.QkvWeight], dInput, accumulate: true);
            if (_lora is not null) LoraBackward(l, la, dqkv, dInput);
        }

        private void LoraBackward(int l, LayerTape la, double[] dqkv, double[] dInput)
        {
            var lora = _lora!;
            int d = _d, r = lora.Rank, rows = _rows;
            var (qa, qb, va, vb) = EngineParameters.LoraNames(l);
            foreach (var (j, a, b) in new[] { (0, qa, qb), (1, va, vb) })
            {
                var (column0, width) = LoraTarget(j);
                var du = new double[rows * width];
                ColumnBlock.BackwardReference(dqkv, du, rows, width, _qkvw, column0, lora.Scale);
                Gemm.TNReference(r, width, rows, la.LoraT[j], du, _gl[b], accumulate: true);
                var dt = new double[rows * r];
                Gemm.NTReference(rows, r, width, du, lora.Tensors[b], dt);
                Gemm.TNReference(d, r, rows, la.LoraInput[j], dt, _gl[a], accumulate: true);
                var dInputLora = new double[rows * d];
                Gemm.NTReference(rows, d, r, dt, lora.Tensors[a], dInputLora);
                if (lora.Dropout > 0)
                {
                    var (seed, offset) = Sublayers.LoraDropoutStream(lora.Seed, l, j, rows, d);
                    Dropout.BackwardReference(dInputLora, dInput, lora.Dropout, seed, offset);
                }
                else Residual(dInputLora, dInput);
            }
        }

        /// <summary>dInput += FFNᵀ·dF; the weight gradients accumulate.</summary>
        private void FeedForwardBackward(int l, LayerTape la, double[] dF, double[] dInput)
        {
            var n = EngineParameters.LayerNames(l);
            int rows = _rows, d = _d, F = _s.FfnSize;
            var dAct = new double[rows * F];
            Gemm.NTReference(rows, F, d, dF, _t[n.FfnDownWeight], dAct);
            Gemm.TNReference(F, d, rows, la.Act, dF, G(n.FfnDownWeight), accumulate: true);
            if (G(n.FfnDownBias).Length > 0) Bias.BackwardReference(dF, G(n.FfnDownBias), rows, d);
            var dUp = new double[rows * _fin];
            switch (_s.Activation)
            {
                case ActivationKind.GeluErf: Gelu.BackwardReference(dAct, la.Up, dUp); break;
                case ActivationKind.GeluTanh: GeluTanh.BackwardReference(dAct, la.Up, dUp); break;
                default: SwiGlu.BackwardReference(dAct, la.Up, dUp, rows, F); break;
            }
            Gemm.TNReference(d, _fin, rows, la.FfnIn, dUp, G(n.FfnUpWeight), accumulate: true);
            if (G(n.FfnUpBias).Length > 0) Bias.BackwardReference(dUp, G(n.FfnUpBias), rows, _fin);
            Gemm.NTReference(rows, d, _fin, dUp, _t[n.FfnUpWeight], dInput, accumulate: true);
        }
    }
}
