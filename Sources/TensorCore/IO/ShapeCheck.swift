extension Tensor {
    /// The number of elements of `shape`, or nil when a dimension is negative or the shape (its size
    /// or its contiguous strides) overflows `Int`. Readers check this, and the byte count against the
    /// file's length, before they allocate: a header's shape is whatever the file says.
    public static func checkedElementCount(_ shape: [Int]) -> Int? {
        var count = 1, strideProduct = 1
        for d in shape {
            guard d >= 0 else { return nil }
            let (c, countOverflow) = count.multipliedReportingOverflow(by: d)
            // Strides skip zero dimensions, so [0, 2^62, 2^62] holds nothing yet cannot be laid out.
            let (s, strideOverflow) = strideProduct.multipliedReportingOverflow(by: Swift.max(d, 1))
            if countOverflow || strideOverflow { return nil }
            count = c
            strideProduct = s
        }
        return count
    }

    /// The bytes `shape` takes at `itemSize` bytes an element, or nil on overflow (see `checkedElementCount`).
    public static func checkedByteCount(_ shape: [Int], itemSize: Int) -> Int? {
        guard let count = checkedElementCount(shape) else { return nil }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: itemSize)
        return overflow ? nil : bytes
    }
}
