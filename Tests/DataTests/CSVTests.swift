import Foundation
import Testing
import Data

struct CSVTests {
    @Test func headerAndLabelByName() throws {
        let text = "sepal_length,sepal_width,label\n5.1,3.5,0\n4.9, 3.0 ,2\r\n\n6.2,2.9,1\n"
        let ds = try CSVDataset(text: text, label: "label")
        #expect(ds.count == 3)
        #expect(ds.sampleShape == [2])
        #expect(ds.featureNames == ["sepal_length", "sepal_width"])
        #expect(ds.labelName == "label")
        #expect(ds.classes == nil)
        #expect(ds[1] == Example(features: [4.9, 3.0], shape: [2], label: 2))
        #expect(ds.data.labels == [0, 2, 1])
        // A byte-order mark before the header, as spreadsheets write it.
        #expect(try CSVDataset(text: "\u{FEFF}a,label\n1,0\n", label: "label").featureNames == ["a"])
    }

    @Test func labelByIndexWithAndWithoutHeader() throws {
        // No header: detected because every field of the first row is a number.
        let plain = try CSVDataset(text: "1,2,3\n4,5,6\n", label: 0)
        #expect(plain.count == 2 && plain[0] == Example(features: [2, 3], shape: [2], label: 1))
        #expect(plain.featureNames == ["column 1", "column 2"])
        // The last column, counted from the end; a header detected from its text.
        let headed = try CSVDataset(text: "a;b;y\n1.5;-2e3;7\n", label: -1, delimiter: ";")
        #expect(headed.count == 1 && headed[0] == Example(features: [1.5, -2000], shape: [2], label: 7))
        #expect(headed.featureNames == ["a", "b"])
        // Told there is no header.
        #expect(try CSVDataset(text: "1,2\n3,4\n", label: 1, hasHeader: false).count == 2)
        #expect(try CSVDataset(text: "x,y\n3,4\n", label: 1, hasHeader: true).count == 1)
    }

    @Test func classNameLabelsAreNumberedInSortedOrder() throws {
        let ds = try CSVDataset(text: "f,species\n1,virginica\n2,setosa\n3,versicolor\n4,setosa\n", label: "species")
        #expect(ds.classes == ["setosa", "versicolor", "virginica"])
        #expect(ds.data.labels == [2, 0, 1, 0])
    }

    @Test func quotedFields() throws {
        let ds = try CSVDataset(text: "\"a, first\",\"b \"\"q\"\"\",c\n\"1.5\",2,\"3\"\n", label: "c")
        #expect(ds.featureNames == ["a, first", "b \"q\""])
        #expect(ds[0] == Example(features: [1.5, 2], shape: [2], label: 3))
        guard case .csvParse("<csv>", 2, _, let reason)? = dataError({ try CSVDataset(text: "a,b\n\"1,2\n", label: 1) }) else {
            Issue.record("expected csvParse for an open quote"); return
        }
        #expect(reason.contains("not closed"))
    }

    @Test func badNumberNamesLineAndColumn() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let url = try dir.file("iris.csv", Data("a,b,label\n1,2,0\n\n3,x7,1\n".utf8))
        let error = dataError { try CSVDataset(url: url, label: "label") }
        guard case .csvParse(url.path, 4, "1 (\"b\")", let reason)? = error else {
            Issue.record("expected csvParse at line 4, column b; got \(String(describing: error))"); return
        }
        #expect(reason.contains("\"x7\" is not a number"))
        #expect(error?.description.contains("\(url.path): line 4, column 1 (\"b\")") == true)
    }

    @Test func otherRowErrors() throws {
        guard case .csvParse(_, 3, "", let ragged)? = dataError({ try CSVDataset(text: "a,b,c\n1,2,3\n4,5\n", label: "c") }) else {
            Issue.record("expected ragged row error"); return
        }
        #expect(ragged.contains("2 fields, expected 3"))
        guard case .csvParse(_, 2, "0 (\"a\")", "empty value")? = dataError({ try CSVDataset(text: "a,b\n,1\n", label: "b") }) else {
            Issue.record("expected empty value error"); return
        }
        guard case .csvParse(_, 3, "1 (\"b\")", let label)? = dataError({ try CSVDataset(text: "a,b\n1,2\n3,2.5\n", label: "b") }) else {
            Issue.record("expected non-integer label error"); return
        }
        #expect(label.contains("not an integer"))
        guard case .invalidArgument(let missing)? = dataError({ try CSVDataset(text: "a,b\n1,2\n", label: "c") }) else {
            Issue.record("expected invalidArgument"); return
        }
        #expect(missing.contains("no column \"c\""))
        #expect(dataError { try CSVDataset(text: "1,2\n", label: 5) } != nil)
        #expect(dataError { try CSVDataset(text: "\n\n", label: 0) } != nil)
        let gone = URL(fileURLWithPath: "/nonexistent/data.csv")
        guard case .fileNotFound(gone.path, _)? = dataError({ try CSVDataset(url: gone, label: 0) }) else {
            Issue.record("expected fileNotFound"); return
        }
    }
}
