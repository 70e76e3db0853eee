using SkTuning.Gpu.Import;

namespace SkTuning.Gpu.Engine;

/// <summary>
/// How one layer composes its two sublayers (attention, FFN), their norms and residuals — the part of a transformer
/// family that is structure rather than kernels. Chosen once from the spec (<see cref="For"/>); the sublayers themselves
/// (<see cref="Sublayers"/>) are the same for every family.
/// </summary>
internal abstract class TransformerBlock
{
    /// <summary>The block of <paramref name="spec"/>'s norm placement.</summary>
    public static TransformerBlock For(ModelSpec spec) => spec.NormPlacement switch
    {
        NormPlacement.Post => new PostNormBlock(),
        NormPlacement.Pre => new PreNormBlock(),
        NormPlacement.Parallel => new ParallelBlock(),
        var p => throw new SkTuningException($"the engine has no block for norm placement {p}"),
    };

    /// <summary>output = layer l (x); saves what the backward needs in <paramref name="la"/>.</summary>
    public abstract void Forward(Sublayers s, int l, int rows, LayerActivations la, DeviceView<float> x, DeviceView<float> output);

    /// <summary>
    /// From d(loss)/d(output) in <paramref name="dx"/>, overwrites <paramref name="dx"/> with d(loss)/d(x) (only when
    /// <paramref name="inputGradient"/>; the prefix and weight gradients accumulate regardless). <paramref name="dr"/> and
    /// <paramref name="dh"/> are [rows, d] scratch.
    /// </summary>
    public abstract void Backward(Sublayers s, int l, int rows, LayerActivations la, DeviceView<float> x, DeviceView<float> dx,
        DeviceView<float> dr, DeviceView<float> dh, bool inputGradient);
}

/// <summary>BERT: h = AttnNorm(x + Attn(x)); out = FfnNorm(h + FFN(h)).</summary>
internal sealed class PostNormBlock : TransformerBlock
{
    public override void Forward(Sublayers s, int l, int rows, LayerActivations la, DeviceView<float> x, DeviceView<float> output)
    {
        int d = s.Spec.Hidden;
        var w = s.Weights(l);
        var attnSum = la.AttnSum.Slice(0, rows * d);
        var h = la.AttnNormOut.Slice(0, rows * d);
        var ffnSum = la.FfnSum.Slice(0, rows * d);
        s.Attention(l, rows, la, x, attnSum);
        s.Norm.ResidualForward(attnSum, x, attnSum, w.AttnNormGamma, w.AttnNormBeta, h, la.AttnMean.Slice(0, rows), la.AttnRstd.Slice(0, rows), rows);
        s.FeedForward(l, rows, la, h, ffnSum);
        s.Norm.ResidualForward(ffnSum, h, ffnSum, w.FfnNormGamma, w.FfnNormBeta, output, la.FfnMean.Slice(0, rows), la.FfnRstd.Slice(0, rows), rows);
    }

    public override void Backward(Sublayers s, int l, int rows, LayerActivations la, DeviceView<float> x, DeviceView<float> dx,
        DeviceView<float> dr, DeviceView<float> dh, bool inputGradient)
    {
        int d = s.Spec.Hidden;
        var w = s.Weights(l);
        var g = s.Gradients(l);
        // out = FfnNorm(ffnSum), ffnSum = h + FFN(h)
        s.Backend.Zero(dr);
        s.Norm.Backward(dx, la.FfnSum.Slice(0, rows * d), w.FfnNormGamma, la.FfnMean.Slice(0, rows), la.FfnRstd.Slice(0, rows), dr,
            g?.FfnNormGamma ?? default, g?.FfnNormBeta ?? default, rows);
        s.Backend.Copy(dr, dh);
        s.FeedForwardBackward(l, rows, la, la.AttnNormOut.Slice(0, rows * d), dr, dh);
        // h = AttnNorm(attnSum), attnSum = x + Attn(x)
        s.Backend.Zero(dr);
        s.Norm.Backward(dh, la.AttnSum.Slice(0, rows * d), w.AttnNormGamma, la.AttnMean.Slice(0, rows), la.AttnRstd.Slice(0, rows), dr,
            g?.AttnNormGamma ?? default, g?.AttnNormBeta ?? default, rows);
        if (inputGradient) s.Backend.Copy(dr, dx);
        s.AttentionBackward(l, rows, la, x, dr, dx, inputGradient);
    }
}

/// <summary>GPT-2, LLaMA: h = x + Attn(AttnNorm(x)); out = h + FFN(FfnNorm(h)).</summary>
internal sealed class PreNormBlock : TransformerBlock
{
    public override void Forward(Sublayers s, int l, int rows, LayerActivations la, DeviceView<float> x, DeviceView<float> output)
    {
        int d = s.Spec.Hidden;
        var w = s.Weights(l);
        var a = la.AttnNormOut.Slice(0, rows * d);
        var h = la.AttnSum.Slice(0, rows * d);
        var b = la.FfnNormOut.Slice(0, rows * d);
        s.Norm.Forward(x, w.AttnNormGamma, w.AttnNormBeta, a, la.AttnMean.Slice(0, rows), la.AttnRstd.Slice(0, rows), rows);
        s.Attention(l, rows, la, a, h);
        s.Norm.ResidualForward(h, x, h, w.FfnNormGamma, w.FfnNormBeta, b, la.FfnMean.Slice(0, rows), la.FfnRstd.Slice(0, rows), rows);
        s.FeedForward(l, rows, la, b, output);
        s.Backend.Accumulate(h, output);
    }

    public override void Backward(Sublayers s, int l, int rows, LayerActivations la, DeviceView<float> x, DeviceView<float> dx,
        DeviceView<float> dr, DeviceView<float> dh, bool inputGradient)
    {
        int d = s.Spec.Hidden;
        var w = s.Weights(l);
        var g = s.Gradients(l);
        // out = h + FFN(b), b = FfnNorm(h): dh = dout + FfnNormᵀ(FFNᵀ(dout))
        s.Backend.Copy(dx, dh);
        s.Backend.Zero(dr);
        s.FeedForwardBackward(l, rows, la, la.FfnNormOut.Slice(0, rows * d), dx, dr);
        s.Norm.Backward(dr, la.AttnSum.Slice(0, rows * d), w.FfnNormGamma, la.FfnMean.Slice(0, rows), la.FfnRstd.Slice(0, rows), dh,
            g?.FfnNormGamma ?? default, g?.FfnNormBeta ?? default, rows);
        // h = x + Attn(a), a = AttnNorm(x): dx = dh + AttnNormᵀ(Attnᵀ(dh))
        s.Backend.Zero(dr);
        s.AttentionBackward(l, rows, la, la.AttnNormOut.Slice(0, rows * d), dh, dr, inputGradient);
        if (!inputGradient) return;   // (full fine-tuning always wants it: the embeddings train)
        s.Backend.Copy(dh, dx);
        s.Norm.Backward(dr, x, w.AttnNormGamma, la.AttnMean.Slice(0, rows), la.AttnRstd.Slice(0, rows), dx,
            g?.AttnNormGamma ?? default, g?.AttnNormBeta ?? default, rows);
    }
}

/// <summary>
/// Falcon, Phi: out = x + Attn(AttnNorm(x)) + FFN(FfnNorm(x)), with FfnNorm = AttnNorm when the block shares one norm
/// (<see cref="ModelSpec.SharedNorm"/>). The backward sums the two branches' gradients into the shared norm's output
/// before its backward (two norms: each branch through its own), plus the residual.
/// </summary>
internal sealed class ParallelBlock : TransformerBlock
{
    public override void Forward(Sublayers s, int l, int rows, LayerActivations la, DeviceView<float> x, DeviceView<float> output)
    {
        int d = s.Spec.Hidden;
        var w = s.Weights(l);
        var a = la.AttnNormOut.Slice(0, rows * d);
        var b = s.Spec.SharedNorm ? a : la.FfnNormOut.Slice(0, rows * d);
        var ffn = la.FfnSum.Slice(0, rows * d);
        s.Norm.Forward(x, w.AttnNormGamma, w.AttnNormBeta, a, la.AttnMean.Slice(0, rows), la.AttnRstd.Slice(0, rows), rows);
        if (!s.Spec.SharedNorm)
            s.Norm.Forward(x, w.FfnNormGamma, w.FfnNormBeta, b, la.FfnMean.Slice(0, rows), la.FfnRstd.Slice(0, rows), rows);
        s.Attention(l, rows, la, a, output);
        s.FeedForward(l, rows, la, b, ffn);
        s.Backend.Accumulate(ffn, output);
        s.Backend.Accumulate(x, output);
    }

    public override void Backward(Sublayers s, int l, int rows, LayerActivations la, DeviceView<float> x, DeviceView<float> dx,
        DeviceView<float> dr, DeviceView<float> dh, bool inputGradient)
    {
        int d = s.Spec.Hidden;
        var w = s.Weights(l);
        var g = s.Gradients(l);
        var a = la.AttnNormOut.Slice(0, rows * d);
        // dr = Attnᵀ(dout), the gradient at the attention norm's output.
        s.Backend.Zero(dr);
        s.AttentionBackward(l, rows, la, a, dx, dr, inputGradient);
        if (!inputGradient) return;   // (full fine-tuning always wants it: the embeddings train)
        // Shared norm: dr += FFNᵀ(dout); two norms: dh = FFNᵀ(dout), through the FFN norm below.
        var dFfnIn = dr;
        if (!s.Spec.SharedNorm)
        {
            dFfnIn = dh;
            s.Backend.Zero(dh);
        }
        s.FeedForwardBackward(l, rows, la, s.Spec.SharedNorm ? a : la.FfnNormOut.Slice(0, rows * d), dx, dFfnIn);
        // dx = dout + Normᵀ(…): dout is no longer needed, so the norm backwards accumulate onto it in place.
        s.Norm.Backward(dr, x, w.AttnNormGamma, la.AttnMean.Slice(0, rows), la.AttnRstd.Slice(0, rows), dx,
            g?.AttnNormGamma ?? default, g?.AttnNormBeta ?? default, rows);
        if (!s.Spec.SharedNorm)
            s.Norm.Backward(dh, x, w.FfnNormGamma, la.FfnMean.Slice(0, rows), la.FfnRstd.Slice(0, rows), dx,
                g?.FfnNormGamma ?? default, g?.FfnNormBeta ?? default, rows);
    }
}
