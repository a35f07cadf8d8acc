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
}
