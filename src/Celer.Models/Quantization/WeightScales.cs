using Celer.Models.Weights;

namespace Celer.Models.Quantization;

/// <summary>
/// The scales of one FP8 weight as its checkpoint stores them, as a grid of blocks over the [rows, columns] matrix:
/// weight[r, c] = code[r, c] · <see cref="Grid"/>[(r / <see cref="BlockRows"/>) · <see cref="GridColumns"/> + c /
/// <see cref="BlockColumns"/>]. Per tensor is one block of the whole matrix, per channel one block per row; per block the
/// checkpoint's blocks, the last ones partial.
/// </summary>
public sealed record WeightScales(Fp8WeightScales Kind, float[] Grid, int BlockRows, int BlockColumns, int Rows, int Columns)
{
    public int GridRows => (Rows + BlockRows - 1) / BlockRows;

    public int GridColumns => (Columns + BlockColumns - 1) / BlockColumns;

    /// <summary>The scale of element [row, column].</summary>
    public float At(int row, int column) => Grid[(row / BlockRows * GridColumns) + (column / BlockColumns)];

    /// <summary>
    /// values[r, c] = E4M3 code[r, c] × its scale, one fp32 product as <c>q.float() * scale</c> in PyTorch (exact for the
    /// bf16 scales most checkpoints store): the weight as W8A8 kernels multiply it.
    /// </summary>
    public unsafe void Dequantize(byte* codes, float* values)
    {
        for (int r = 0; r < Rows; r++)
        {
            for (int c = 0; c < Columns; c++)
            {
                long i = ((long)r * Columns) + c;
                values[i] = Fp8.Decode(codes[i], DType.F8E4M3) * At(r, c);
            }
        }
    }
}
