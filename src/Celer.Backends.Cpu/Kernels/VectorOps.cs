using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Celer.Backends.Cpu.Kernels;

/// <summary>
/// The fp32 vector operations of one register width, so that a loop that is the same at 512 and 256 bits
/// is written once as a generic method over <c>TOps, TVec</c> (.NET 10 keeps its own <c>ISimdVector</c>
/// internal). The implementations are structs: the JIT compiles a separate copy of the generic method per
/// struct type argument, with these static calls inlined to the plain Vector512/Vector256 intrinsics, so
/// the specialized loop is the hand-written one; nothing is virtual or boxed.
/// </summary>
internal unsafe interface IVectorOps<TVec>
    where TVec : struct
{
    /// <summary>fp32 lanes per vector.</summary>
    static abstract int Count { get; }

    static abstract TVec Load(float* source);

    static abstract void Store(TVec value, float* destination);

    static abstract TVec Create(float value);

    static abstract TVec Subtract(TVec left, TVec right);

    static abstract TVec Add(TVec left, TVec right);

    /// <summary>a · b + c with one rounding.</summary>
    static abstract TVec FusedMultiplyAdd(TVec a, TVec b, TVec c);

    static abstract TVec Exp(TVec value);

    static abstract float Sum(TVec value);
}

/// <summary><see cref="IVectorOps{TVec}"/> on 512-bit registers (16 floats).</summary>
internal readonly unsafe struct Vector512Ops : IVectorOps<Vector512<float>>
{
    public static int Count => Vector512<float>.Count;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load(float* source) => Vector512.Load(source);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vector512<float> value, float* destination) => value.Store(destination);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Create(float value) => Vector512.Create(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Subtract(Vector512<float> left, Vector512<float> right) => left - right;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Add(Vector512<float> left, Vector512<float> right) => left + right;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> FusedMultiplyAdd(Vector512<float> a, Vector512<float> b, Vector512<float> c)
        => Vector512.FusedMultiplyAdd(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> value) => Vector512.Exp(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vector512<float> value) => Vector512.Sum(value);
}

/// <summary><see cref="IVectorOps{TVec}"/> on 256-bit registers (8 floats).</summary>
internal readonly unsafe struct Vector256Ops : IVectorOps<Vector256<float>>
{
    public static int Count => Vector256<float>.Count;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load(float* source) => Vector256.Load(source);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vector256<float> value, float* destination) => value.Store(destination);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Create(float value) => Vector256.Create(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Subtract(Vector256<float> left, Vector256<float> right) => left - right;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Add(Vector256<float> left, Vector256<float> right) => left + right;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> FusedMultiplyAdd(Vector256<float> a, Vector256<float> b, Vector256<float> c)
        => Vector256.FusedMultiplyAdd(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> value) => Vector256.Exp(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vector256<float> value) => Vector256.Sum(value);
}

/// <summary>Loops over whole vectors that kernels of different files share, each generic over the width.</summary>
internal static unsafe class VectorLoops
{
    /// <summary>
    /// s_c = x · w_c for four rows w0..w3 over the whole vectors of <paramref name="length"/>, one x load feeding
    /// four independent FMA chains; returns where the caller's scalar tail starts.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Dot4<TOps, TVec>(
        float* x, float* w0, float* w1, float* w2, float* w3, int length, out float s0, out float s1, out float s2, out float s3)
        where TOps : struct, IVectorOps<TVec>
        where TVec : struct
    {
        TVec a0 = default, a1 = default, a2 = default, a3 = default;
        int i = 0;
        for (; i <= length - TOps.Count; i += TOps.Count)
        {
            var xv = TOps.Load(x + i);
            a0 = TOps.FusedMultiplyAdd(xv, TOps.Load(w0 + i), a0);
            a1 = TOps.FusedMultiplyAdd(xv, TOps.Load(w1 + i), a1);
            a2 = TOps.FusedMultiplyAdd(xv, TOps.Load(w2 + i), a2);
            a3 = TOps.FusedMultiplyAdd(xv, TOps.Load(w3 + i), a3);
        }

        s0 = TOps.Sum(a0);
        s1 = TOps.Sum(a1);
        s2 = TOps.Sum(a2);
        s3 = TOps.Sum(a3);
        return i;
    }
}
