using Celer.Backends.Cpu.Kernels;
using Celer.Models.Weights;
using Xunit;

namespace Celer.Backends.Cpu.Tests.Kernels;

public unsafe class EmbeddingTests
{
    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.F16)]
    [InlineData(DType.BF16)]
    public void Gather_CopiesTheWidenedRows(DType type)
    {
        const int vocab = 11, hidden = 37;
        var random = new Random(41 + (int)type);
        var (stored, values) = TestData.Weights(random, vocab * hidden, type);
        int[] ids = [3, 0, 10, 3, 7];
        var output = new float[ids.Length * hidden];
        fixed (byte* pt = stored)
        fixed (int* pi = ids)
        fixed (float* po = output)
        {
            Embedding.Gather(pi, ids.Length, pt, type, vocab, hidden, po);
        }

        for (int t = 0; t < ids.Length; t++)
        {
            Assert.Equal(values.AsSpan(ids[t] * hidden, hidden).ToArray(), output.AsSpan(t * hidden, hidden).ToArray());
        }
    }

    [Theory]
    [InlineData(11)]
    [InlineData(-1)]
    public void Gather_RejectsIdsOutsideTheVocabulary(int badId)
    {
        var table = new float[11 * 4];
        int[] ids = [1, badId];
        var output = new float[2 * 4];
        var error = Assert.Throws<ArgumentOutOfRangeException>(() =>
        {
            fixed (float* pt = table, po = output)
            fixed (int* pi = ids)
            {
                Embedding.Gather(pi, ids.Length, pt, DType.F32, 11, 4, po);
            }
        });
        Assert.Equal(badId, error.ActualValue);
    }
}
