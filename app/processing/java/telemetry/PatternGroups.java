package telemetry;

import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.api.java.UDF1;
import org.apache.spark.sql.functions;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;

/**
 * The named groups g0, g1, ... of one regular expression matched against a text column, as a struct of
 * strings; null when the text does not match. The parse (app/processing/transform.py) builds the
 * expression and names the struct's fields: this class knows no record layout.
 *
 * <p>Why not Spark's own functions: reading a record in the producer's form with them took one match
 * (rlike) and then a split or a substring_index per field. Profiled on a replay, the split and its
 * element lookups were a fifth of the tasks' time, and substring_index scans byte by byte with a call
 * per position. One match that keeps its groups reads every field at once.
 */
public final class PatternGroups implements UDF1<String, Row> {
  private static final long serialVersionUID = 1L;
  private final Pattern pattern;
  private final String[] groups;

  PatternGroups(String regex, int count) {
    this.pattern = Pattern.compile(regex);
    this.groups = new String[count];
    for (int i = 0; i < count; i++) {
      groups[i] = "g" + i;
    }
  }

  @Override
  public Row call(String text) {
    if (text == null) {
      return null;
    }
    Matcher matcher = pattern.matcher(text);
    if (!matcher.matches()) {
      return null;
    }
    Object[] values = new Object[groups.length];
    for (int i = 0; i < values.length; i++) {
      values[i] = matcher.group(groups[i]);
    }
    return RowFactory.create(values);
  }

  /**
   * `frame` with a column `output`: the groups g0, g1, ... of `regex` in `input`, named by
   * `fieldNames` (comma-separated, in the groups' order), each a string.
   */
  public static Dataset<Row> withGroups(
      Dataset<Row> frame, String input, String output, String regex, String fieldNames) {
    String[] names = fieldNames.split(",");
    StructType fields = new StructType();
    for (String name : names) {
      fields = fields.add(name, DataTypes.StringType, true);
    }
    PatternGroups groups = new PatternGroups(regex, names.length);
    return frame.withColumn(output, functions.udf(groups, fields).apply(functions.col(input)));
  }
}
