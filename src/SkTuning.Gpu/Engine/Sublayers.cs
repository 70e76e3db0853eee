using SkTuning.Gpu.Import;
using SkTuning.Gpu.Kernels;

namespace SkTuning.Gpu.Engine;

/// <summary>
/// The two sublayers every family's layer is made of, forward and backward, on one forward's state: attention (fused QKV
/// projection, LoRA on q/v, RoPE or ALiBi, the fused attention kernel with the batch-shared prefix, the output projection) and
/// the FFN (input projection, GELU-erf / GELU-tanh / SwiGLU, output projection). Under full fine-tuning the backward also
/// accumulates the weight gradients. A <see cref="TransformerBlock"/> wires them with norms and residuals.
/// </summary>
internal sealed class Sublayers : IDisposable
{
    private readonly DeviceWeights _w;
    private readonly DeviceWeights? _g;
    private readonly LoraLayer[]? _lora;
    private readonly LoraOptions? _loraOptions;
    private readonly DeviceArray<float>? _ropeCos, _ropeSin, _alibiSlopes;
    private Activations _act = null!;
    private AttentionShape _shape;
    private DeviceView<float> _mask, _prefix, _dPrefix, _dPromptKv;
    private DeviceView<int> _prefixChoice;
    private int _prefixAdapters = 1;
    private int _promptRows;
    private DeviceView<int> _positions;
    private bool _training;
    private ulong _seed;

    public Sublayers(Backend backend, ModelSpec spec, DeviceWeights weights, DeviceWeights? gradients, LoraLayer[]? lora, LoraOptions? loraOptions)
    {
        Backend = backend;
        Spec = spec;
        Norm = new NormOps(backend, spec);
        _w = weights;
        _g = gradients;
        _lora = lora;
        _loraOptions = loraOptions;
        if (spec.Activation is not (ActivationKind.GeluErf or ActivationKind.GeluTanh or ActivationKind.SwiGlu))
            throw new SkTuningException($"the engine has no kernel for activation {spec.Activation}");
        if (spec.Positions == PositionKind.Rope)
        {
            var (cos, sin) = Rope.Tables(spec.MaxPositions, spec.RotaryDim, spec.RopeTheta);
            _ropeCos = backend.UploadNew(cos);
            _ropeSin = backend.UploadNew(sin);
        }
        if (spec.Positions == PositionKind.Alibi) _alibiSlopes = backend.UploadNew(Kernels.Attention.AlibiSlopes(spec.Heads));
    }

    public Backend Backend { get; }
    public ModelSpec Spec { get; }
    public NormOps Norm { get; }
    public DeviceLayer Weights(int l) => _w.Layers[l];
    public DeviceLayer? Gradients(int l) => _g?.Layers[l];

    private int QkvWidth => EngineParameters.QkvWidth(Spec);

    /// <summary>
    /// Sets the state of one forward: shape, key mask [B, S], positions of the rows [B·S] for RoPE and ALiBi (prefix keys
    /// sit at 0..m−1) and the prefix [L, 2, m, kvDim] — or, with a per-example <paramref name="prefixChoice"/> [B], A stacked
    /// prefixes [L, 2, A, m, kvDim] (inference).
    /// </summary>
    public void Begin(Activations act, AttentionShape shape, DeviceView<float> mask, DeviceView<int> positions,
        DeviceView<float> prefix, DeviceView<int> prefixChoice, int prefixAdapters, bool training, ulong seed)
    {
        _act = act; _shape = shape; _mask = mask; _positions = positions;
        _prefix = prefix; _prefixChoice = prefixChoice; _prefixAdapters = prefixAdapters; _training = training; _seed = seed;
    }

    /// <summary>Where <see cref="AttentionBackward"/> accumulates the prefix gradient [L, 2, m, kvDim] (empty = none).</summary>
    public void SetPrefixGradient(DeviceView<float> dPrefix) => _dPrefix = dPrefix;

    /// <summary>
    /// Where a shared prompt's prefix gradient [L, 2, m, kvDim] comes from (empty = none): <see cref="AttentionBackward"/>
    /// adds it into the first <paramref name="rows"/> rows' key and value gradients.
    /// </summary>
    public void SetPromptKeyValueGradient(DeviceView<float> dPromptKv, int rows)
    {
        _dPromptKv = dPromptKv;
        _promptRows = rows;
    }

    /// <summary>Rotates keys [rows, kvDim] at positions 0..rows−1 back to unrotated (no-op without RoPE).</summary>
    public void Unrotate(DeviceView<float> keys, int rows)
    {
        if (!Rotary) return;
        Backend.RopeBackward(keys, PositionsFromZero(rows), _ropeCos!.All, _ropeSin!.All, rows, Spec.KvDim, Spec.KvHeads, Spec.HeadSize, Spec.RotaryDim);
    }

    private DeviceArray<int>? _zeroBased;

    /// <summary>Positions 0..n−1 — of prefix keys and of shared prompt rows (uploaded once, grown on demand).</summary>
    private DeviceView<int> PositionsFromZero(int n)
    {
        if (_zeroBased is null || _zeroBased.Length < n)
        {
            _zeroBased?.Dispose();
            _zeroBased = Backend.AllocateInts(n);
            Backend.Upload(Enumerable.Range(0, n).ToArray(), _zeroBased.All);
        }
        return _zeroBased.Slice(0, n);
    }

    private (DeviceView<float> K, DeviceView<float> V) PrefixViews(DeviceView<float> prefix, int layer)
    {
        int m = _shape.PrefixLength;
        if (m == 0 || prefix.IsEmpty) return (default, default);
        int block = _prefixAdapters * m * Spec.KvDim;
        return (prefix.Slice(2 * layer * block, block), prefix.Slice((2 * layer + 1) * block, block));
    }

    private bool Rotary => _ropeCos is not null;

    /// <summary>output = Attention(input)·Wo + bo for layer <paramref name="l"/>; saves qkv (rotated), probabilities and context.</summary>
    public void Attention(int l, int rows, LayerActivations la, DeviceView<float> input, DeviceView<float> output)
    {
        int d = Spec.Hidden, qkvw = QkvWidth;
        var w = _w.Layers[l];
        var qkv = la.Qkv.Slice(0, rows * qkvw);
        Backend.Gemm(GemmOp.NN, rows, qkvw, d, input, w.Wqkv, qkv, w.Bqkv);
        if (_lora is not null) LoraForward(l, rows, input, qkv);
        var (pk, pv) = PrefixViews(_prefix, l);
        if (Rotary)
        {
            // q and k columns are contiguous: one call rotates both; prefix keys sit at positions 0..m−1.
            Backend.RopeForward(qkv, _positions, _ropeCos!.All, _ropeSin!.All, rows, qkvw, Spec.Heads + Spec.KvHeads, Spec.HeadSize, Spec.RotaryDim);
            if (!pk.IsEmpty)
            {
                var rotated = la.PrefixK!.Slice(0, pk.Length);
                Backend.Copy(pk, rotated);
                // Each stacked prefix (one without a prefix choice) sits at positions 0..m−1.
                int block = _shape.PrefixLength * Spec.KvDim;
                for (int a = 0; a < _prefixAdapters; a++)
                    Backend.RopeForward(rotated.Slice(a * block, block), PositionsFromZero(_shape.PrefixLength), _ropeCos.All, _ropeSin.All,
                        _shape.PrefixLength, Spec.KvDim, Spec.KvHeads, Spec.HeadSize, Spec.RotaryDim);
                pk = rotated;
            }
        }
        // ALiBi: each key's bias follows its row's position (the prefix keys' 0..m−1 are the kernel's own numbering).
        var (slopes, keyPositions) = _alibiSlopes is null ? (default, default) : (_alibiSlopes.All, _positions);
        Backend.AttentionForward(_shape, Spec.MaskValue, Spec.Causal, qkv, pk, pv, _mask, slopes, keyPositions,
            la.Context.Slice(0, rows * d), la.Probabilities.Slice(0, _shape.ProbsLength), _prefixChoice);
        Backend.Gemm(GemmOp.NN, rows, d, d, la.Context.Slice(0, rows * d), w.Wo, output, w.Bo);
    }

    /// <summary>
    /// Backward of <see cref="Attention"/> from d(loss)/d(output) <paramref name="dOut"/>: dInput += (when
    /// <paramref name="inputGradient"/>), the prefix gradient and (full fine-tuning, LoRA) the weight gradients accumulate.
    /// </summary>
    public void AttentionBackward(int l, int rows, LayerActivations la, DeviceView<float> input, DeviceView<float> dOut,
        DeviceView<float> dInput, bool inputGradient)
    {
        int d = Spec.Hidden, qkvw = QkvWidth;
        var w = _w.Layers[l];
        var g = _g?.Layers[l];
        var a = _act;
        var dctx = a.DContext.Slice(0, rows * d);
        var dqkv = a.DQkv.Slice(0, rows * qkvw);
        LinearBackward(rows, d, d, la.Context.Slice(0, rows * d), dOut, w.Wo, dctx, accumulate: false, g?.Wo.Fp32 ?? default, g?.Bo ?? default);
        Backend.Zero(dqkv);
        var (pk, pv) = PrefixViews(_prefix, l);
        var (dpk, dpv) = PrefixViews(_dPrefix, l);
        var dpkRotated = dpk;
        if (Rotary && !pk.IsEmpty)
        {
            pk = la.PrefixK!.Slice(0, pk.Length);
            if (!dpk.IsEmpty)
            {
                dpkRotated = a.DPrefixK!.Slice(0, dpk.Length);
                Backend.Zero(dpkRotated);
            }
        }
        Backend.AttentionBackward(_shape, dctx, la.Qkv.Slice(0, rows * qkvw), pk, pv, la.Probabilities.Slice(0, _shape.ProbsLength),
            dqkv, dpkRotated, dpv);
        if (!_dPromptKv.IsEmpty) AddPromptKeyValueGradient(l, dqkv);
        if (Rotary)
        {
            Backend.RopeBackward(dqkv, _positions, _ropeCos!.All, _ropeSin!.All, rows, qkvw, Spec.Heads + Spec.KvHeads, Spec.HeadSize, Spec.RotaryDim);
            if (dpkRotated != dpk)
            {
                Backend.RopeBackward(dpkRotated, PositionsFromZero(_shape.PrefixLength), _ropeCos.All, _ropeSin.All, _shape.PrefixLength, Spec.KvDim, Spec.KvHeads,
                    Spec.HeadSize, Spec.RotaryDim);
                Backend.Accumulate(dpkRotated, dpk);
            }
        }
        LinearBackward(rows, d, qkvw, input, dqkv, w.Wqkv, inputGradient ? dInput : default, accumulate: true, g?.Wqkv.Fp32 ?? default, g?.Bqkv ?? default);
        if (_lora is not null) LoraBackward(l, rows, input, dqkv, dInput);
    }

    /// <summary>
    /// dqkv[prompt rows, k and v columns] += layer l's shared-prompt prefix gradient; the keys' part rotated forward first
    /// (the prefix held them unrotated: d/d(rotated) = R·d/d(unrotated)).
    /// </summary>
    private void AddPromptKeyValueGradient(int l, DeviceView<float> dqkv)
    {
        int m = _promptRows, kv = Spec.KvDim, d = Spec.Hidden, block = m * kv;
        var dk = _act.DPromptK!.Slice(0, block);
        Backend.Copy(_dPromptKv.Slice(2 * l * block, block), dk);
        if (Rotary)
            Backend.RopeForward(dk, PositionsFromZero(m), _ropeCos!.All, _ropeSin!.All, m, kv, Spec.KvHeads, Spec.HeadSize, Spec.RotaryDim);
        var promptRows = dqkv.Slice(0, m * QkvWidth);
        Backend.AddColumnBlock(dk, promptRows, m, kv, QkvWidth, d, 1f);
        Backend.AddColumnBlock(_dPromptKv.Slice((2 * l + 1) * block, block), promptRows, m, kv, QkvWidth, d + kv, 1f);
    }

    /// <summary>output = act(input·W1 + b1)·W2 + b2 for layer <paramref name="l"/>; saves the projection and the activation.</summary>
    public void FeedForward(int l, int rows, LayerActivations la, DeviceView<float> input, DeviceView<float> output)
    {
        int d = Spec.Hidden, F = Spec.FfnSize, Fin = EngineParameters.FfnInputWidth(Spec);
        var w = _w.Layers[l];
        var ffnIn = la.FfnIn.Slice(0, rows * Fin);
        var act = la.FfnAct.Slice(0, rows * F);
        if (Spec.Activation == ActivationKind.GeluErf) Backend.GemmGeluForward(rows, Fin, d, input, w.W1, w.B1, ffnIn, act);
        else
        {
            Backend.Gemm(GemmOp.NN, rows, Fin, d, input, w.W1, ffnIn, w.B1);
            if (Spec.Activation == ActivationKind.GeluTanh) Backend.GeluTanhForward(ffnIn, act);
            else Backend.SwiGluForward(ffnIn, act, rows, F);
        }
        Backend.Gemm(GemmOp.NN, rows, d, F, act, w.W2, output, w.B2);
    }

    /// <summary>Backward of <see cref="FeedForward"/>: dInput += FFNᵀ·dOut; weight gradients under full fine-tuning.</summary>
    public void FeedForwardBackward(int l, int rows, LayerActivations la, DeviceView<float> input, DeviceView<float> dOut, DeviceView<float> dInput)
    {
        int d = Spec.Hidden, F = Spec.FfnSize, Fin = EngineParameters.FfnInputWidth(Spec);
        var w = _w.Layers[l];
        var g = _g?.Layers[l];
        var dact = _act.DFfnAct.Slice(0, rows * F);
        var dffn = _act.DFfn.Slice(0, rows * Fin);
        var ffnIn = la.FfnIn.Slice(0, rows * Fin);
        if (Spec.Activation == ActivationKind.GeluErf)
        {
            // dffn = GELU'(ffnIn)·(dOut·W2ᵀ) in one op; W2's own gradients (full fine-tuning) below.
            Backend.GemmGeluBackward(rows, F, d, dOut, w.W2, ffnIn, dffn, dact);
            LinearBackward(rows, F, d, la.FfnAct.Slice(0, rows * F), dOut, w.W2, default, accumulate: false, g?.W2.Fp32 ?? default, g?.B2 ?? default);
        }
        else
        {
            LinearBackward(rows, F, d, la.FfnAct.Slice(0, rows * F), dOut, w.W2, dact, accumulate: false, g?.W2.Fp32 ?? default, g?.B2 ?? default);
            Backend.Zero(dffn);
            if (Spec.Activation == ActivationKind.GeluTanh) Backend.GeluTanhBackward(dact, ffnIn, dffn);
            else Backend.SwiGluBackward(dact, ffnIn, dffn, rows, F);
        }
        LinearBackward(rows, d, Fin, input, dffn, w.W1, dInput, accumulate: true, g?.W1.Fp32 ?? default, g?.B1 ?? default);
    }

    /// <summary>
    /// Backward of a projection y = x·W + b ([rows, inWidth] → [rows, outWidth]): dx = dy·Wᵀ (+= with
    /// <paramref name="accumulate"/>; skipped when dx is empty), and under full fine-tuning (dW not empty) dW += xᵀ·dy and
    /// dB += the column sums of dy.
    /// </summary>
    private void LinearBackward(int rows, int inWidth, int outWidth, DeviceView<float> x, DeviceView<float> dy, WeightMatrix w,
        DeviceView<float> dx, bool accumulate, DeviceView<float> dW, DeviceView<float> dB)
    {
        if (!dx.IsEmpty) Backend.Gemm(GemmOp.NT, rows, inWidth, outWidth, dy, w, dx, accumulate: accumulate);
        if (dW.IsEmpty) return;
        Backend.Gemm(GemmOp.TN, inWidth, outWidth, rows, x, dy, dW, accumulate: true);
        if (!dB.IsEmpty) Backend.BiasBackward(dy, dB, rows, outWidth);
    }

    /// <summary>
    /// The counter-RNG stream of LoRA's dropout for one layer and target (0 query, 1 value): its own seed and offset, so
    /// no mask repeats another (nor the head's or an adapter's, which use the caller's seed directly).
    /// </summary>
    internal static (ulong Seed, long Offset) LoraDropoutStream(ulong seed, int layer, int target, int rows, int dim) =>
        (seed ^ 0x4C6F52414C6F5241UL, (long)(2 * layer + target) * rows * dim);

    private bool LoraDropoutActive => _training && _loraOptions!.Dropout > 0f;

    /// <summary>Columns of q (target 0) or v (target 1) in the fused qkv row, and their width.</summary>
    private (int Column0, int Width) LoraTarget(int j) =>
        j == 0 ? (0, Spec.Hidden) : (Spec.Hidden + Spec.KvDim, Spec.KvDim);

    /// <summary>qkv[:, q or v columns] += (α/r)·(dropout(x)·A)·B for layer <paramref name="l"/>; saves t = dropout(x)·A.</summary>
    private void LoraForward(int l, int rows, DeviceView<float> x, DeviceView<float> qkv)
    {
        var a = _act;
        var o = _loraOptions!;
        int d = Spec.Hidden, r = o.Rank;
        for (int j = 0; j < 2; j++)
        {
            var (A, Bm) = j == 0 ? (_lora![l].QueryA.Value, _lora[l].QueryB.Value) : (_lora![l].ValueA.Value, _lora[l].ValueB.Value);
            var (column0, width) = LoraTarget(j);
            var input = x;
            if (LoraDropoutActive)
            {
                input = a.LoraX!.Slice(0, rows * d);
                var (s, off) = LoraDropoutStream(_seed, l, j, rows, d);
                Backend.DropoutForward(x, input, o.Dropout, s, off);
            }
            var t = a.LoraT[2 * l + j].Slice(0, rows * r);
            var u = a.LoraU!.Slice(0, rows * width);
            Backend.Gemm(GemmOp.NN, rows, r, d, input, A, t);
            Backend.Gemm(GemmOp.NN, rows, width, r, t, Bm, u);
            Backend.AddColumnBlock(u, qkv, rows, width, QkvWidth, column0, o.Scale);
        }
    }

    /// <summary>From dqkv: accumulates dA, dB of layer <paramref name="l"/> and adds LoRA's share of d(loss)/d(x) into <paramref name="dx"/>.</summary>
    private void LoraBackward(int l, int rows, DeviceView<float> x, DeviceView<float> dqkv, DeviceView<float> dx)
    {
        var a = _act;
        var o = _loraOptions!;
        int d = Spec.Hidden, r = o.Rank;
        for (int j = 0; j < 2; j++)
        {
            var (A, Bm) = j == 0 ? (_lora![l].QueryA, _lora[l].QueryB) : (_lora![l].ValueA, _lora[l].ValueB);
            var (column0, width) = LoraTarget(j);
            var t = a.LoraT[2 * l + j].Slice(0, rows * r);
            var du = a.LoraU!.Slice(0, rows * width);
            var dt = a.LoraDT!.Slice(0, rows * r);
            Backend.Zero(du);
            Backend.ColumnBlockBackward(dqkv, du, rows, width, QkvWidth, column0, o.Scale);
            Backend.Gemm(GemmOp.TN, r, width, rows, t, du, Bm.Gradient, accumulate: true);   // dB += tᵀ·du
            Backend.Gemm(GemmOp.NT, rows, r, width, du, Bm.Value, dt);                      // dt = du·Bᵀ
            if (LoraDropoutActive)
            {
                var xd = a.LoraX!.Slice(0, rows * d);
                var (s, off) = LoraDropoutStream(_seed, l, j, rows, d);
                Backend.DropoutForward(x, xd, o.Dropout, s, off);                      // recompute dropout(x)
                Backend.Gemm(GemmOp.TN, d, r, rows, xd, dt, A.Gradient, accumulate: true);
                Backend.Gemm(GemmOp.NT, rows, d, r, dt, A.Value, xd);                  // d(dropout(x)), reusing the buffer
                Backend.DropoutBackward(xd, dx, o.Dropout, s, off);
            }
            else
            {
                Backend.Gemm(GemmOp.TN, d, r, rows, x, dt, A.Gradient, accumulate: true); // dA += xᵀ·dt
                Backend.Gemm(GemmOp.NT, rows, d, r, dt, A.Value, dx, accumulate: true);    // dx += dt·Aᵀ
            }
        }
    }

    public void Dispose()
    {
        _zeroBased?.Dispose();
        _ropeCos?.Dispose();
        _ropeSin?.Dispose();
        _alibiSlopes?.Dispose();
    }
}
