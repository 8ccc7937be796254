package telemetry;

import java.io.Serializable;
import java.util.regex.Pattern;
import org.apache.spark.api.java.function.MapFunction;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;

/**
 * A record as it arrived, from the stateful step's input row. The shuffle to the processor's one task
 * carries a valid trade in the producer's form without its raw text, which only a late trade or a
 * conflict quotes: the fields the row carries anyway (the symbol, the ids and times, as longs) and the
 * other values (`wire_values`), joined. Put back between the text around them in that form, they are
 * the record, byte for byte: its integers are in the form a long prints (transform.py).
 *
 * <p>transform.py gives the text around the values (WIRE_LITERALS), each field's column in the row or
 * none (WIRE_SOURCES), and the separator that joins the values and these lists (WIRE_SEPARATOR).
 */
public final class WireForm implements Serializable {
  private static final long serialVersionUID = 1L;
  private final String separator;
  private final String[] literals;
  private final int[] columns; // each field's column in the row, or -1: the next of the wire values
  private final int literalsLength;

  private WireForm(String separator, String[] literals, int[] columns) {
    this.separator = separator;
    this.literals = literals;
    this.columns = columns;
    int length = 0;
    for (String literal : literals) {
      length += literal.length();
    }
    this.literalsLength = length;
  }

  /** The form of the rows of `schema` (transform.ledger_input's). */
  static WireForm of(StructType schema, String separator, String literals, String sources) {
    String[] names = sources.split(Pattern.quote(separator), -1);
    int[] columns = new int[names.length];
    for (int i = 0; i < names.length; i++) {
      columns[i] = names[i].isEmpty() ? -1 : schema.fieldIndex(names[i]);
    }
    return new WireForm(separator, literals.split(Pattern.quote(separator), -1), columns);
  }

  /** The record `row` stands for: its raw text if it carries one, else put back together. */
  String rawValue(Row row) {
    if (!row.isNullAt(LedgerProcessor.VALUE)) {
      return row.getString(LedgerProcessor.VALUE);
    }
    String values = row.getString(LedgerProcessor.WIRE_VALUES);
    StringBuilder text = new StringBuilder(literalsLength + values.length() + 48);
    int from = 0;
    for (int i = 0; i < columns.length; i++) {
      text.append(literals[i]);
      if (columns[i] >= 0) {
        text.append(row.get(columns[i]));
      } else {
        int end = values.indexOf(separator, from);
        if (end < 0) {
          end = values.length();
        }
        text.append(values, from, end);
        from = end + separator.length();
      }
    }
    return text.append(literals[columns.length]).toString();
  }

  /** For the tests: (offset, rawValue) of each of `rows`, transform.ledger_input's rows. */
  public static Dataset<Row> rawValues(
      Dataset<Row> rows, String separator, String literals, String sources) {
    WireForm form = of(rows.schema(), separator, literals, sources);
    StructType out =
        new StructType().add("offset", DataTypes.LongType).add("value", DataTypes.StringType);
    MapFunction<Row, Row> quote =
        row -> RowFactory.create(row.getLong(LedgerProcessor.OFFSET), form.rawValue(row));
    return rows.map(quote, Encoders.row(out));
  }
}
